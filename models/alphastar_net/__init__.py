"""An AlphaStar-style agent network (Vinyals et al., Nature 2019): specs, encoders, heads, returns, a toy game."""
