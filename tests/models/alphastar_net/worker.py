"""One process of the two-worker test: trains as `python -m models.alphastar_net.train` does, then
writes the weights it holds to an .npz file (by variable name), so the test can compare
what each worker ended with.

    python -c "from tests.models.alphastar_net import worker; worker.main(sys.argv[1:])" OUT.npz [train.py flags]
"""

import numpy as np
from absl import flags

from models.alphastar_net import train


def main(argv: list[str]) -> None:
    out, args = argv[0], argv[1:]
    train.define_flags()
    flags.FLAGS(["worker", *args])
    strategy = train.core.distribute.make_strategy(flags.FLAGS.strategy)
    train.parse_config(flags.FLAGS.gin_config, flags.FLAGS.gin_bindings, flags.FLAGS.seed)
    settings = train.Settings()
    with strategy.scope():
        model = settings.model(interface=settings.task.interface)
    train.train(settings, flags.FLAGS.workdir, strategy, model=model)
    np.savez(out, **{v.name: v.numpy() for v in model.variables})
