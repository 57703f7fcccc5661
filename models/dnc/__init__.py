"""The Differentiable Neural Computer (Graves et al., Nature 2016): model, tasks, training."""
