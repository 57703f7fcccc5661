"""The main job's demonstration trains, and `--seed` makes it reproducible."""

from benchmarks import run


def test_demo_learns_and_seed_reproduces_it(capsys):
    first = run.main(["--steps", "60", "--seed", "3"])
    again = run.main(["--steps", "60", "--seed", "3"])
    other = run.main(["--steps", "60", "--seed", "4"])
    assert first == again
    assert first != other
    assert first["loss"] < 0.3 and first["accuracy"] > 0.85  # from ln 2 = 0.69 at chance
    assert "step   60" in capsys.readouterr().out
