"""pytorch-dnc (the `dnc` package on PyPI), timed as our `dnc` workload is: one side-by-side process.

Runs under the peer's Python, not ours; `benchmarks/side_by_side.py` starts it:

    python -m benchmarks.side_by_side dnc --peer pytorch_dnc --peer-python PEER_VENV/bin/python

Create that venv once (PyTorch's CPU wheel; the `dnc` package without its
dependencies, since it asks for `flann`, which only its sparse memories use):

    python3 -m venv PEER_VENV
    PEER_VENV/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    PEER_VENV/bin/pip install numpy
    PEER_VENV/bin/pip install --no-deps dnc

The step is the one our workload times (`benchmarks/workloads/dnc.py`): the DNC over
a time-major sequence of standard-normal inputs, the mean square of its outputs as the
loss, the backward pass and an RMSProp update (learning rate 1e-4, decay 0.9,
epsilon 1e-10, no momentum: DeepMind's settings). The configuration maps onto the
package's constructor as: hidden -> an LSTM controller of one layer
(`num_hidden_layers=1`; the package's default is 2), memory -> `nr_cells`, word ->
`cell_size`, reads -> `read_heads`, one write head (the package has only one), clip 20.
Where pytorch-dnc computes something else than ours, models/dnc/README.md says so
(its output size is always its input size, for one).
"""

import sys

import protocol

SETUP = (
    "Install the peer into a separate venv: python3 -m venv PEER_VENV && "
    "PEER_VENV/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu numpy && "
    "PEER_VENV/bin/pip install --no-deps dnc; then pass --peer-python PEER_VENV/bin/python."
)


def build(config: dict, step: str, threads: int):
    """The step as a no-argument callable, and the versions and threads it ran with."""
    try:
        import importlib.metadata

        import torch
        from dnc import DNC
    except ImportError as e:
        protocol.missing(e.name or "torch / dnc", SETUP)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = DNC(
        input_size=config["inputs"],
        hidden_size=config["hidden"],
        rnn_type="lstm",
        num_layers=1,
        num_hidden_layers=1,
        nr_cells=config["memory"],
        cell_size=config["word"],
        read_heads=config["reads"],
        batch_first=False,
        gpu_id=-1,
        clip=20,
    )
    inputs = torch.randn(config["steps"], config["batch"], config["inputs"])
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.9, eps=1e-10, momentum=0.0)

    def train() -> float:
        optimizer.zero_grad(set_to_none=True)
        outputs, _ = model(inputs, (None, None, None), reset_experience=True)
        loss = outputs.square().mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    def forward() -> float:
        with torch.no_grad():
            outputs, _ = model(inputs, (None, None, None), reset_experience=True)
        return outputs.sum().item()

    info = {
        "threads": torch.get_num_threads(),
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "dnc": importlib.metadata.version("dnc"),
        },
    }
    return (train if step == "train" else forward), info


def main() -> None:
    args = protocol.parse(__doc__.splitlines()[0])
    call, info = build(args.config, args.step, args.threads)
    protocol.report("pytorch_dnc", args, protocol.measure(call, args.steps, args.warmup), **info)


if __name__ == "__main__":
    main()
