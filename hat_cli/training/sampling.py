"""Which SubTransformers a SuperTransformer update trains (the distillation loss is in loss.py).

``random`` is HAT's published rule: one SubTransformer per update, ``space.sample(Random(offset + update))``.
``sandwich`` trains, on the same batches of every update, the largest SubTransformer, the smallest and
``sandwich_random`` random ones (the first of them is HAT's draw for that update), then ``sandwich_hand_scaled``
draws from the space's hand-scaled (plain) Transformers. With ``distill > 0`` every
SubTransformer but the largest also learns from the largest one's predictions of the same batch (in-place
distillation), weight ``distill`` against the label-smoothed loss.

Why: with one random SubTransformer per update, a short SuperTransformer training ranks architectures by how
often their slices were trained rather than by how good they are alone (bench/RESULTS.md, "The search against hand-scaled Transformers"). The
sandwich keeps both ends of the space trained in every update, and the distillation gives every slice one
consistent target, the same two means BigNAS and OFA use for weight-sharing supernets.

Why hand-scaled draws: a uniform draw picks every layer's FFN size and heads independently, so it almost never
yields a uniform Transformer; a 512-wide plain model with one decoder layer then shares weights that were trained
only as the first of the largest model's six layers, and its inherited loss is far worse than the same model
trained alone (RESULTS, "Rank fidelity"). Plain Transformers are the search's first population and the
baselines it must beat, so their slices should be trained as themselves.

No torch here: training/config.py checks the settings with it before the trainer is imported.
"""

from __future__ import annotations

import random

from hat_cli.core.errors import HatError
from hat_cli.model.space import SearchSpace, SubTransformerConfig

SAMPLINGS = ("random", "sandwich")


def check_sampling(sampling: str, sandwich_random: int, distill: float, sandwich_hand_scaled: int = 0) -> None:
    if sampling not in SAMPLINGS:
        raise HatError(f"Unknown SuperTransformer sampling '{sampling}'; choose one of: {', '.join(SAMPLINGS)}.")
    if sandwich_random < 0:
        raise HatError(f"sandwich_random must not be negative, got {sandwich_random}.")
    if sandwich_hand_scaled < 0:
        raise HatError(f"sandwich_hand_scaled must not be negative, got {sandwich_hand_scaled}.")
    if sandwich_hand_scaled > 0 and sampling != "sandwich":
        raise HatError("Hand-scaled draws (sandwich_hand_scaled > 0) belong to sampling 'sandwich'.")
    if not 0.0 <= distill <= 1.0:
        raise HatError(f"distill must be in [0, 1], got {distill}.")
    if distill > 0 and sampling != "sandwich":
        raise HatError("In-place distillation (distill > 0) needs sampling 'sandwich', whose largest SubTransformer is the teacher.")


def update_architectures(space: SearchSpace, sampling: str, updates: int, arch_seed_offset: int = 0,
                         sandwich_random: int = 2, sandwich_hand_scaled: int = 0) -> list[SubTransformerConfig]:
    """The SubTransformers trained by update ``updates`` (0-based), teacher first for ``sandwich``.

    The hand-scaled draws come after the random ones from the same generator, so adding them leaves every
    earlier draw (and HAT's sequence) as it was."""
    rng = random.Random(arch_seed_offset + updates)
    if sampling == "random":
        return [space.sample(rng)]
    arbitrary = space.choices["decoder_arbitrary_ende_attn"]
    largest = space.largest(max(arbitrary))
    smallest = space.smallest(min(arbitrary))
    drawn = [space.sample(rng) for _ in range(sandwich_random)]
    if sandwich_hand_scaled:
        plain = plain_transformers_to_draw(space)
        drawn += [rng.choice(plain) for _ in range(sandwich_hand_scaled)]
    return [largest, smallest] + drawn


def plain_transformers_to_draw(space: SearchSpace) -> list[SubTransformerConfig]:
    """The space's hand-scaled Transformers (listed once per space), refused when there are none."""
    plain = space.hand_scaled()
    if not plain:
        raise HatError(f"The search space '{space.name}' has no hand-scaled Transformer to draw "
                       "(sandwich_hand_scaled needs one attending to the last encoder layer only).")
    return plain
