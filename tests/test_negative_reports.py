"""Report sentences on negative cases that need no trained run: what is claimed only above a threshold."""

import numpy as np


def test_induction_offsets_are_named_only_above_the_circuit_threshold():
    """An untrained 2-layer model's heads score ~0.02 at every offset (chance: ~1/context): the argmax of
    such scores is noise, so no offset is named for them (it used to read 'head 1: offset 16 (0.02)')."""
    from grokinterp.report import CIRCUIT_THRESHOLD, _offsets_text

    profile = np.full((2, 16), 0.02)
    profile[0, 15] = 0.45  # a head with a circuit at offset 16
    profile[1, 15] = 0.021  # a head whose best offset only ties the others
    text = _offsets_text(profile)
    assert text == f"head 0: offset 16 (0.45); head 1: none above {CIRCUIT_THRESHOLD} (best 0.02)"
