"""BigGAN (Brock, Donahue & Simonyan, ICLR 2019): model, losses, sampling, metrics, data, training."""
