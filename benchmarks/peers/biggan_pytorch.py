"""BigGAN-PyTorch (ajbrock/BigGAN-PyTorch, by the paper's first author), timed as our `biggan` workload is.

Runs under the peer's Python, not ours; `benchmarks/side_by_side.py` starts it with the
user's clone of the repository (nothing of it is copied here):

    git clone https://github.com/ajbrock/BigGAN-PyTorch /path/to/BigGAN-PyTorch
    python -m benchmarks.side_by_side biggan --peer biggan_pytorch --peer-python PEER_VENV/bin/python \\
        --peer-dir /path/to/BigGAN-PyTorch --preset quick

The venv needs PyTorch (the CPU wheel) and NumPy:

    python3 -m venv PEER_VENV
    PEER_VENV/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    PEER_VENV/bin/pip install numpy

The step is our workload's (`benchmarks/workloads/biggan.py`): one discriminator step on
a batch of real images and one of generated images (the generator without gradients,
real and fake in one discriminator pass, as the repository's `G_D` does), hinge loss,
Adam; then one generator step (new latents, hinge loss through the updated
discriminator, Adam). Built with the repository's `Generator` and `Discriminator`
classes, configured as our networks: hierarchical latent of 120 (`hier=True`), shared
class embedding of 128 (`G_shared=True`), attention at `attention` or none (`'0'`),
orthogonal initialisation, Adam learning rates 1e-4 (G) and 4e-4 (D), betas 0 and
0.999, epsilon 1e-8, batch-norm eps 1e-5, one spectral-norm power iteration per call.
"""

import os
import sys

import protocol

SETUP = (
    "Install the peer into a separate venv: python3 -m venv PEER_VENV && "
    "PEER_VENV/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu numpy; clone "
    "https://github.com/ajbrock/BigGAN-PyTorch and pass --peer-python PEER_VENV/bin/python --peer-dir CLONE."
)


def build(config: dict, step: str, threads: int, peer_dir: str):
    """The step as a no-argument callable, and the versions and threads it ran with."""
    if not peer_dir or not os.path.exists(os.path.join(peer_dir, "BigGAN.py")):
        protocol.missing(f"BigGAN.py in --peer-dir {peer_dir!r}", SETUP)
    sys.path.insert(0, peer_dir)
    try:
        import BigGAN  # the user's clone
        import torch
    except ImportError as e:
        protocol.missing(e.name or "torch / BigGAN", SETUP)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    attention = str(config["attention"] or 0)
    common = dict(resolution=config["resolution"], n_classes=config["classes"], adam_eps=1e-8, BN_eps=1e-5)
    g = BigGAN.Generator(
        G_ch=config["ch"],
        dim_z=120,
        G_attn=attention,
        G_shared=True,
        shared_dim=128,
        hier=True,
        G_lr=1e-4,
        G_B1=0.0,
        G_B2=0.999,
        G_init="ortho",
        **common,
    )
    d = BigGAN.Discriminator(
        D_ch=config["ch"], D_attn=attention, D_lr=4e-4, D_B1=0.0, D_B2=0.999, D_init="ortho", **common
    )
    g.train()
    d.train()
    batch, classes, res = config["batch"], config["classes"], config["resolution"]
    images = (torch.randn(batch, 3, res, res) * 0.5).clamp(-1, 1)
    labels = torch.randint(0, classes, (batch,))

    def train() -> float:
        z, fake_labels = torch.randn(batch, g.dim_z), torch.randint(0, classes, (batch,))
        d.optim.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake = g(z, g.shared(fake_labels))
        logits = d(torch.cat([images, fake]), torch.cat([labels, fake_labels]))
        real_logits, fake_logits = torch.split(logits, [batch, batch])
        d_loss = torch.relu(1.0 - real_logits).mean() + torch.relu(1.0 + fake_logits).mean()
        d_loss.backward()
        d.optim.step()
        z, fake_labels = torch.randn(batch, g.dim_z), torch.randint(0, classes, (batch,))
        g.optim.zero_grad(set_to_none=True)
        g_loss = -d(g(z, g.shared(fake_labels)), fake_labels).mean()
        g_loss.backward()
        g.optim.step()
        return d_loss.item() + g_loss.item()

    def forward() -> float:
        g.eval()
        with torch.no_grad():
            z, fake_labels = torch.randn(batch, g.dim_z), torch.randint(0, classes, (batch,))
            total = g(z, g.shared(fake_labels)).sum().item()
        g.train()
        return total

    info = {
        "threads": torch.get_num_threads(),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__},
    }
    return (train if step == "train" else forward), info


def main() -> None:
    description = __doc__.splitlines()[0]
    p = protocol.parser(description)
    p.add_argument("--peer-dir", default=os.environ.get("BIGGAN_PYTORCH_DIR"), help="a clone of BigGAN-PyTorch")
    args = protocol.parse(description, None, p)
    call, info = build(args.config, args.step, args.threads, args.peer_dir)
    protocol.report("biggan_pytorch", args, protocol.measure(call, args.steps, args.warmup), **info)


if __name__ == "__main__":
    main()
