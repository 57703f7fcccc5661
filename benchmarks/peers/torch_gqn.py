"""torch-gqn (iShohei220/torch-gqn, a PyTorch GQN), timed as our `gqn` workload is: one side-by-side process.

Runs under the peer's Python, not ours, with a clone of the peer's repository that
the user made (this repository holds none of its code); `benchmarks/side_by_side.py`
starts it:

    git clone https://github.com/iShohei220/torch-gqn PEER_DIR
    python3 -m venv PEER_VENV
    PEER_VENV/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    python -m benchmarks.side_by_side gqn --peer torch_gqn --peer-python PEER_VENV/bin/python \\
        --peer-dir PEER_DIR --preset paper

The step is the one our workload times (`benchmarks/workloads/gqn.py`) and torch-gqn's
train.py takes: the negative ELBO of the query view given the context views (its
`GQN.forward`, which returns the ELBO per example), its mean over the batch, the
backward pass and an Adam update (0.9, 0.999, 1e-8). The forward step is its
`GQN.generate`, without gradients. Its sizes are fixed in its code (64x64 frames, a
256-channel representation, 128-channel ConvLSTMs, 3 latent channels), so only those
configurations run; the configuration's representation ("tower", "pool"), steps (its
L), shared (its shared_core), batch and views are passed on. Where it computes
something else than ours, models/gqn/README.md says so (it learns an upsampling of the
query camera and of a pooled representation where ours broadcasts them, for one).
"""

import os
import sys

import protocol

SETUP = (
    "Clone the peer and install PyTorch into a separate venv: git clone https://github.com/iShohei220/torch-gqn "
    "PEER_DIR && python3 -m venv PEER_VENV && PEER_VENV/bin/pip install torch --index-url "
    "https://download.pytorch.org/whl/cpu; then pass --peer-python PEER_VENV/bin/python --peer-dir PEER_DIR."
)
# torch-gqn's sizes, fixed in its code.
FIXED = {"image": 64, "r_channels": 256, "hidden": 128, "z": 3}
SIGMA = 2.0  # as our workload: the paper's pixel standard deviation at the start


def build(config: dict, step: str, threads: int, peer_dir: str):
    """The step as a no-argument callable, and the versions, threads and parameter count it ran with."""
    if not peer_dir or not os.path.isfile(os.path.join(peer_dir, "model.py")):
        sys.exit(f"torch_gqn.py: --peer-dir must be a clone of torch-gqn (with model.py), got {peer_dir!r}.\n{SETUP}")
    wrong = {k: config.get(k) for k, v in FIXED.items() if config.get(k) != v}
    if wrong:
        sys.exit(f"torch_gqn.py: torch-gqn's sizes are fixed at {FIXED}; this configuration has {wrong}")
    if config["representation"] not in ("pool", "tower"):
        sys.exit(f"torch_gqn.py: representation must be pool or tower, got {config['representation']!r}")
    sys.path.insert(0, os.path.abspath(peer_dir))
    try:
        import torch
        from model import GQN
    except ImportError as e:
        protocol.missing(e.name or "torch / torch-gqn", SETUP)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GQN(representation=config["representation"], L=config["steps"], shared_core=bool(config["shared"]))
    batch, views, size = config["batch"], config["views"], FIXED["image"]
    frames = torch.rand(batch, views, 3, size, size)
    cameras = torch.randn(batch, views, 7)
    query_camera = torch.randn(batch, 7)
    query = torch.rand(batch, 3, size, size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    def train() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = -model(frames, cameras, query_camera, query, SIGMA).mean()
        loss.backward()
        optimizer.step()
        return loss.item()

    def forward() -> float:
        with torch.no_grad():
            return model.generate(frames, cameras, query_camera).sum().item()

    info = {
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__},
    }
    return (train if step == "train" else forward), info


def main() -> None:
    description = __doc__.splitlines()[0]
    p = protocol.parser(description)
    p.add_argument("--peer-dir", required=True, help="a clone of iShohei220/torch-gqn")
    args = protocol.parse(description, None, p)
    call, info = build(args.config, args.step, args.threads, args.peer_dir)
    protocol.report("torch_gqn", args, protocol.measure(call, args.steps, args.warmup), **info)


if __name__ == "__main__":
    main()
