"""The dock's band matcher (pure Python): model bands found in a layer's band descriptions."""

from omnisat_qgis.band_matching import band_keys, match_bands

S2 = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12")
L1C = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def test_picks_the_ten_of_thirteen_l1c_bands_by_description():
    mapping = match_bands(S2, list(L1C))
    assert mapping.layer_bands == (2, 3, 4, 5, 6, 7, 8, 9, 12, 13) and mapping.how == "descriptions"
    assert not mapping.missing and not mapping.is_identity(13)


def test_unnamed_l1c_stack_uses_the_product_layout_and_says_so():
    mapping = match_bands(S2, [""] * 13)
    assert mapping.layer_bands == (2, 3, 4, 5, 6, 7, 8, 9, 12, 13) and "L1C" in mapping.how


def test_sentinel1_polarisations_in_any_order_with_an_extra_band():
    assert match_bands(("VV", "VH"), ["VH", "VV", "VV/VH ratio"]).layer_bands == (2, 1)
    unnamed = match_bands(("VV", "VH"), ["", "", ""])
    assert unnamed.layer_bands == (1, 2) and unnamed.how == "position"


def test_common_names_and_descriptions_with_words():
    assert match_bands(("R", "G", "B", "NIR"), ["B04 red", "B03", "Blue (B2)", "B08 near infrared"]).layer_bands == (
        1,
        2,
        3,
        4,
    )
    assert match_bands(("R", "G", "B", "NIR"), ["Red", "Green", "Blue", "NIR"]).is_identity(4)


def test_missing_bands_are_none_and_listed():
    mapping = match_bands(S2, ["B02 blue", "B03 green", "B04 red", "B08 nir"])
    assert mapping.layer_bands == (1, 2, 3, None, None, None, 4, None, None, None)
    assert mapping.missing == ["B5", "B6", "B7", "B8A", "B11", "B12"]


def test_keys_do_not_read_codes_inside_other_words():
    assert band_keys("B8A").code == "B8A" and band_keys("b08").code == "B8"
    assert band_keys("Band 1").code == "" and band_keys("blue band").common == "blue"
