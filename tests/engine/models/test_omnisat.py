"""OmniSat parts and model: shapes, losses, masking, padding, subsets, gradients, bad input."""

import math

import pytest
import torch

from engine.errors import EngineError
from engine.models.image_encoder import ImagePatchDecoder, ImagePatchEncoder
from engine.models.losses import patch_contrastive_loss, series_reconstruction_loss
from engine.models.masking import random_token_mask, top_attention_dates
from engine.runtime.precision import autocast_context
from tests.engine.omnisat_helpers import tiny_batch, tiny_model

torch.set_num_threads(2)


def test_image_encoder_keeps_indices_and_decoder_unpools_with_them():
    torch.manual_seed(0)
    encoder, decoder = ImagePatchEncoder(4, 32).eval(), ImagePatchDecoder(4, 32).eval()
    patches = torch.randn(3, 4, 50, 50)
    embedding, trace = encoder(patches)
    assert embedding.shape == (3, 32) and embedding.dtype == torch.float32
    assert trace.sizes == [(3, 3), (6, 6), (12, 12), (25, 25)]
    assert [tuple(i.shape[-2:]) for i in trace.indices] == [(1, 1), (3, 3), (6, 6), (12, 12)]
    assert decoder(embedding, trace, 50).shape == (3, 4, 50, 50)
    # the first unpool writes each value exactly where the last pool took it from
    unpooled = torch.nn.functional.max_unpool2d(embedding[:, :, None, None], trace.indices[0], 2, output_size=(3, 3))
    flat = unpooled.flatten(2)
    picked = flat.gather(2, trace.indices[0].flatten(2)).squeeze(-1)
    assert torch.equal(picked, embedding)
    assert int((flat != 0).sum()) == int((embedding != 0).sum())


def test_forward_shapes_dtypes_and_eval_determinism():
    model = tiny_model().eval()
    inputs, dates = tiny_batch(batch=3, grid=(2, 3))  # non-square grid, resized position tables
    with torch.no_grad():
        features = model.forward_features(inputs, dates)
        again = model.forward_features(inputs, dates)
        encoded = model.encode(inputs, dates)
    assert features.tile.shape == (3, 32) and features.patch.shape == (3, 2, 3, 32)
    assert features.tile.dtype == torch.float32 and features.dense is None
    assert torch.equal(features.tile, again.tile) and torch.equal(features.patch, again.patch)
    assert encoded.tokens["aerial"].shape == (3, 6, 32)
    assert encoded.attention["s2"].shape == (3, 6, 5)


def test_bf16_autocast_follows_input_and_stays_close():
    model = tiny_model().eval()
    inputs, dates = tiny_batch()
    with torch.no_grad():
        fp32 = model.forward_features(inputs, dates).patch
        with autocast_context(torch.device("cpu"), torch.bfloat16):
            bf16 = model.forward_features(inputs, dates).patch
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16.float(), dim=-1)
    assert cosine.min() > 0.99


def test_contrastive_loss_hand_computed_case():
    # two modalities, one tile, two patches; modality views agree exactly.
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    tokens = torch.stack([torch.stack([e1, e2]), torch.stack([e1, e2])])[:, None]  # (M=2, B=1, P=2, D=2)
    # token (m0, p0): ignored (m0, p0), (m0, p1) [same tile, same modality];
    # positive (m1, p0) cosine 1; negative (m1, p1) cosine 0. Every token is alike.
    expected = math.log(math.exp(1.0) + math.exp(0.0)) - 1.0
    assert patch_contrastive_loss(tokens, temperature=1.0).item() == pytest.approx(expected, rel=1e-5)
    # a second tile: its tokens become negatives for the first tile's (cosine 1 and 0 again)
    two_tiles = torch.cat([tokens, tokens], dim=1)
    expected = math.log(math.exp(1.0) * 3 + math.exp(0.0) * 3) - 1.0
    assert patch_contrastive_loss(two_tiles, temperature=1.0).item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_loss_matches_explicit_pair_enumeration():
    torch.manual_seed(1)
    m, b, p = 3, 2, 4
    tokens = torch.randn(m, b, p, 8)
    f = torch.nn.functional.normalize(tokens, dim=-1)
    total = 0.0
    for mi in range(m):
        for bi in range(b):
            for pi in range(p):
                positives, everything = [], []
                for mj in range(m):
                    for bj in range(b):
                        for pj in range(p):
                            if mj == mi and bj == bi:
                                continue  # same tile, same modality: ignored
                            s = float(f[mi, bi, pi] @ f[mj, bj, pj]) / 0.1
                            everything.append(s)
                            if bj == bi and pj == pi:
                                positives.append(s)
                total += torch.logsumexp(torch.tensor(everything), 0) - torch.logsumexp(torch.tensor(positives), 0)
    expected = total / (m * b * p)
    assert patch_contrastive_loss(tokens, 0.1).item() == pytest.approx(float(expected), rel=1e-4)


def test_masking_ratio_is_exact():
    mask = random_token_mask(5, 108, 0.75, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and torch.all(mask.sum(dim=1) == 81)
    assert not torch.equal(mask[0], mask[1])


def test_top_attention_dates_choose_quarter_of_valid_dates():
    attention = torch.tensor([[0.1, 0.4, 0.2, 0.3, 0.0, 0.0, 0.0, 0.0], [0.05, 0.1, 0.2, 0.05, 0.3, 0.1, 0.1, 0.1]])
    valid = torch.tensor([[True] * 4 + [False] * 4, [True] * 8])
    index, keep = top_attention_dates(attention, valid, 0.25)
    assert keep.tolist() == [[True, False], [True, True]]
    assert index[0, 0] == 1 and set(index[1].tolist()) == {4, 2}


def test_series_reconstruction_scores_only_masked_tokens_and_kept_dates():
    prediction, target = torch.zeros(1, 2, 3, 2), torch.randn(1, 2, 3, 2)
    keep = torch.tensor([[True, False]])
    masked = torch.tensor([[True, False, False]])
    loss = series_reconstruction_loss(prediction, target, keep, masked)
    standardized = (target - target.mean(dim=(2, 3), keepdim=True)) / (
        target.var(dim=(2, 3), keepdim=True) + 1e-6
    ).sqrt()
    assert loss.item() == pytest.approx(float((standardized[0, 0, 0] ** 2).mean()), rel=1e-5)


def test_padded_dates_get_zero_attention_and_change_nothing():
    model = tiny_model().eval()
    inputs, dates = tiny_batch(t_s2=6)
    mask = {"s2": torch.tensor([[True] * 4 + [False] * 2, [True] * 6])}
    garbage = {k: v.clone() for k, v in inputs.items()}
    garbage["s2"][0, 4:] = 50.0
    with torch.no_grad():
        encoded = model.encode(garbage, dates, mask)
        padded = model.forward_features(garbage, dates, mask)
        short = model.forward_features(
            {**inputs, "s2": inputs["s2"][:1, :4]} | {"aerial": inputs["aerial"][:1], "s1_asc": inputs["s1_asc"][:1]},
            {"s2": dates["s2"][:1, :4], "s1_asc": dates["s1_asc"][:1]},
        )
    assert torch.all(encoded.attention["s2"][0, :, 4:] == 0)
    assert torch.allclose(padded.tile[:1], short.tile, atol=1e-5)


def test_any_subset_of_modalities_and_single_date():
    model = tiny_model().eval()
    inputs, dates = tiny_batch(t_s2=1)
    with torch.no_grad():
        full = model.forward_features(inputs, dates).tile
        for subset in (["aerial"], ["s2"], ["s1_asc"], ["aerial", "s1_asc"], ["s2", "s1_asc"]):
            out = model.forward_features({k: inputs[k] for k in subset}, {k: dates[k] for k in subset if k in dates})
            assert out.patch.shape == (2, 2, 2, 32) and torch.isfinite(out.patch).all()
            assert not torch.allclose(out.tile, full)


def test_pretraining_step_reaches_every_parameter():
    model = tiny_model().train()
    inputs, dates = tiny_batch()
    losses = model.pretraining_loss(inputs, dates, generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"loss", "contrastive", "reconstruction.aerial", "reconstruction.s2", "reconstruction.s1_asc"}
    losses["loss"].backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert silent == []


def test_pretraining_with_one_modality_has_no_contrastive_term():
    model = tiny_model().train()
    inputs, dates = tiny_batch()
    losses = model.pretraining_loss({"s2": inputs["s2"]}, {"s2": dates["s2"]})
    assert "contrastive" not in losses and torch.isfinite(losses["loss"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda i, d: i.update(landsat=torch.zeros(2, 3, 100, 100)), "Unknown modality 'landsat'"),
        (lambda i, d: i.update(aerial=torch.zeros(2, 3, 100, 100)), "3 bands but the model expects 4"),
        (lambda i, d: i.update(aerial=torch.zeros(2, 4, 110, 100)), "not a whole number of 50 x 50 px"),
        (lambda i, d: d.pop("s2"), "needs its dates"),
        (lambda i, d: d.update(s2=torch.ones(2, 3)), r"expected \(B, T\) = \(2, 5\)"),
        (lambda i, d: i["s1_asc"].__setitem__((0, 0, 0, 0, 0), float("nan")), "NaN"),
        (lambda i, d: i.update(s2=torch.zeros(2, 5, 10, 3, 3)), "do not cover the same ground"),
        (lambda i, d: i.update(s2=torch.zeros(2, 10, 6, 6)), r"expected a tensor \(B, T, C, H, W\)"),
    ],
)
def test_bad_input_gets_a_clear_error(mutate, message):
    model = tiny_model().eval()
    inputs, dates = tiny_batch()
    mutate(inputs, dates)
    with pytest.raises(EngineError, match=message):
        model.forward_features(inputs, dates)


def test_empty_input_and_wrong_patch_size_are_errors():
    model = tiny_model().eval()
    inputs, dates = tiny_batch()
    with pytest.raises(EngineError, match="at least one"):
        model.forward_features({}, {})
    with pytest.raises(EngineError, match="patch size"):
        model.forward_features(inputs, dates, patch_size_m=20.0)
    with pytest.raises(EngineError, match="every date masked"):
        model.forward_features(inputs, dates, {"s2": torch.zeros(2, 5, dtype=torch.bool)})


@pytest.mark.parametrize("patch_px", [50, 47, 32])
def test_image_encoder_inference_path_equals_the_textbook_one(patch_px):
    from engine.models.image_encoder import INFERENCE_PATCH_CHUNK

    torch.manual_seed(0)
    encoder = ImagePatchEncoder(4, 32, groups=4).eval()
    with torch.no_grad():  # non-trivial statistics, so that folding the stem's BatchNorm is exercised
        encoder.stem_norm.running_mean.normal_()
        encoder.stem_norm.running_var.uniform_(0.5, 2.0)
        encoder.stem_norm.weight.normal_()
    patches = torch.randn(2 * INFERENCE_PATCH_CHUNK + 3, 4, patch_px, patch_px)
    with torch.no_grad():
        fast, trace = encoder(patches, keep_indices=False)
        textbook, _ = encoder._encode(patches, keep_indices=False)
        # After a weight change the cached folded / transformed weights follow.
        encoder.blocks[0].conv1.weight.mul_(2.0)
        encoder.stem.weight.add_(0.1)
        fast_after, _ = encoder(patches, keep_indices=False)
        textbook_after, _ = encoder._encode(patches, keep_indices=False)
    assert trace is None and fast.shape == (patches.shape[0], 32)
    torch.testing.assert_close(fast, textbook, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_after, textbook_after, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast, fast_after)


def test_whole_model_equals_the_naive_path():
    """Our inference path (oneDNN, SDPA, Winograd, chunks) against the bench's naive one."""
    from engine.bench.omnisat import naive_copy
    from engine.models.attention import explicit_attention
    from engine.models.kernels import default_kernels

    model = tiny_model().eval()
    naive = naive_copy(model)
    inputs, dates = tiny_batch(batch=3, grid=(4, 4))
    with torch.no_grad():
        fast = model.forward_features(inputs, dates)
        with explicit_attention(), default_kernels():
            slow = naive.forward_features(inputs, dates)
    for level in ("tile", "patch", "local"):
        torch.testing.assert_close(getattr(fast, level), getattr(slow, level), atol=1e-5, rtol=1e-5)


def test_series_encoder_in_row_chunks_at_inference_equals_one_call(monkeypatch):
    import engine.models.omnisat as omnisat_module

    model = tiny_model().eval()
    inputs, dates = tiny_batch(batch=3, grid=(4, 4), t_s2=6)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False  # padded dates in one tile
    encoder = model.encoders["s2"]
    with torch.no_grad():
        whole = encoder(inputs["s2"], dates["s2"], mask)
        monkeypatch.setattr(omnisat_module, "LTAE_ROW_CHUNK", 6 * 5)  # 5 sequences per call, a ragged last one
        chunked = encoder(inputs["s2"], dates["s2"], mask)
    for a, b in zip(chunked, whole):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
