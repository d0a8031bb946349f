"""scolio_core: the scoliotune library (data, rendering, models, training loop, checkpoints, CLI).

Layering (a lower layer never imports a higher one):
data (dataset, partitions, synth) -> render / pav -> models -> train loop -> trainables -> sweeps.
"""

__version__ = "0.1.0"

# The one class order used everywhere: labels, logits, confusion matrices, checkpoints.
CLASS_NAMES: tuple[str, str, str] = ("negative", "neutral", "positive")
CLASS_INDEX: dict[str, int] = {name: index for index, name in enumerate(CLASS_NAMES)}
