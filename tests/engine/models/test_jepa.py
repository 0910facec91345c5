"""AnySat JEPA pretraining: masks, date dropping, EMA teacher, a step that learns."""

import torch

from engine.models.anysat import AnySat, anysat_config
from engine.models.jepa import AnySatJEPA, JEPAConfig, JEPAPredictor, drop_dates, keep_modalities, sample_block_masks
from tests.engine.anysat_helpers import batch, small_model

torch.set_num_threads(2)


def test_block_masks_keep_context_off_the_targets():
    cfg = JEPAConfig(total_steps=10)
    for seed in range(5):
        context, targets = sample_block_masks(3, 6, cfg, torch.Generator().manual_seed(seed))
        assert context.shape[0] == 3 and context.shape[1] >= 1 and len(targets) == 4
        for b in range(3):
            covered = set(torch.cat([t[b] for t in targets]).tolist())
            assert covered and not covered & set(context[b].tolist())
            assert all(0 <= i < 36 for i in covered)


def test_modality_masking_keeps_one_modality_per_patch():
    keep = keep_modalities(4, 9, 3, 0.5, torch.Generator().manual_seed(0))
    assert keep.shape == (4, 3, 9)
    assert keep.any(dim=1).all()
    # one sure modality per patch + half of the 2 x 9 others
    assert (keep.sum(dim=(1, 2)) == 9 + int(9 * 2 * 0.5)).all()


def test_date_dropping_keeps_half_of_each_series():
    model = small_model()
    inputs, dates = batch(20, ("aerial", "s2", "s1_asc"), t=6)
    mask = {"s2": torch.ones(2, 6, dtype=torch.bool)}
    x, d, m = drop_dates(inputs, dates, mask, model, 0.5, torch.Generator().manual_seed(0))
    assert x["s2"].shape[1] == 3 and d["s2"].shape == (2, 3) and m["s2"].shape == (2, 3)
    assert torch.equal(x["aerial"], inputs["aerial"])
    for b in range(2):  # the kept dates travel with their images
        for i, day in enumerate(d["s2"][b]):
            j = (dates["s2"][b] == day).nonzero()[0, 0]
            assert torch.equal(x["s2"][b, i], inputs["s2"][b, j])


def test_teacher_follows_the_student_with_the_momentum_schedule():
    jepa = AnySatJEPA(small_model(), JEPAConfig(total_steps=4))
    with torch.no_grad():
        for p in jepa.student.parameters():
            p.add_(1.0)
    student = [p.clone() for p in jepa.student.parameters()]
    teacher = [p.clone() for p in jepa.teacher.parameters()]
    m = jepa.update_teacher()
    assert m == 0.996
    for s, t, new in zip(student, teacher, jepa.teacher.parameters()):
        assert torch.allclose(new, m * t + (1 - m) * s, atol=1e-6)
    assert not any(p.requires_grad for p in jepa.teacher.parameters())
    for _ in range(3):
        jepa.update_teacher()
    assert abs(jepa.momentum() - 1.0) < 1e-9  # reaches 1.0 at the end of the run


def test_a_jepa_step_decreases_its_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    jepa = AnySatJEPA(small_model(names=("aerial", "s2", "s1_asc")), JEPAConfig(total_steps=100))
    inputs, dates = batch(30, ("aerial", "s2", "s1_asc"), t=4)
    params = [p for p in jepa.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    losses = []
    for _ in range(6):
        out = jepa(inputs, dates, patch_size_m=10, generator=torch.Generator().manual_seed(0))
        assert set(out) == {"loss", "jepa", "contrastive"}
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        jepa.update_teacher()
        losses.append(float(out["loss"]))
    assert losses[-1] < 0.8 * losses[0], losses
    assert jepa.predictor.embed.weight.grad is not None and jepa.modality_mask_token.grad is not None


def test_single_modality_step_has_no_contrastive_term():
    jepa = AnySatJEPA(small_model(names=("s2",)), JEPAConfig(total_steps=10))
    out = jepa(*batch(30, ("s2",)), patch_size_m=10, generator=torch.Generator().manual_seed(1))
    assert set(out) == {"loss", "jepa"} and torch.isfinite(out["loss"])


def test_predictor_size_matches_the_reference():
    with torch.device("meta"):
        base = AnySat(anysat_config("base"))
        predictor = JEPAPredictor(base.embed_dim, 4, 16)
    n = sum(p.numel() for p in predictor.parameters())
    assert abs(n / 1e6 - 29.5) <= 0.02 * 29.5, n
