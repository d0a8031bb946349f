"""scolio_core: the scoliotune library (data, rendering, models, training loop, checkpoints, CLI).

Layering (a lower layer never imports a higher one; tests/test_layers.py enforces it):
config, errors, names, provenance -> data -> render -> models -> training -> evaluation -> tracking -> cli,
then the sweep side in scolio_sweep (trainables -> search -> settings -> engine -> stages -> studies -> cli).
"""

__version__ = "0.1.0"

# The one class order used everywhere: labels, logits, confusion matrices, checkpoints.
CLASS_NAMES: tuple[str, str, str] = ("negative", "neutral", "positive")
CLASS_INDEX: dict[str, int] = {name: index for index, name in enumerate(CLASS_NAMES)}
