"""The dock's value-scale check (pure Python): DN vs reflectance, dB vs linear power."""

from omnisat_qgis.value_scale import detect_scale

S2 = ("B2", "B3", "B4", "B8")
S2_DN = (4304.0, 4159.0, 4057.0, 4837.0)
S1 = ("VV", "VH")
S1_LINEAR = (0.1109, 0.0327)


def test_sentinel2_reflectance_for_a_model_of_digital_numbers_is_converted():
    verdict = detect_scale(S2, S2_DN, [0.08, 0.07, 0.06, 0.3])
    assert verdict.conversion == "reflectance_to_dn" and "reflectance" in verdict.text
    assert detect_scale(S2, S2_DN, [900.0, 800.0, 700.0, 3000.0]).ok  # digital numbers: fine


def test_digital_numbers_for_a_model_of_reflectance_are_converted():
    verdict = detect_scale(S2, (0.43, 0.41, 0.40, 0.48), [900.0, 800.0, 700.0, None])
    assert verdict.conversion == "dn_to_reflectance"


def test_values_off_by_another_factor_are_said_without_a_conversion():
    verdict = detect_scale(S2, S2_DN, [40.0, 35.0, 30.0, 90.0])
    assert verdict.conversion is None and "times what the model expects" in verdict.text


def test_sentinel1_db_for_a_linear_model_and_back():
    verdict = detect_scale(S1, S1_LINEAR, [-10.0, -16.4])
    assert verdict.conversion == "db_to_linear" and "dB" in verdict.text
    assert detect_scale(S1, S1_LINEAR, [0.09, 0.02]).ok
    assert detect_scale(S1, (-10.0, -17.0), [0.09, 0.02]).conversion == "linear_to_db"


def test_nothing_to_compare_is_fine():
    assert detect_scale(S2, (), [0.1, 0.1, 0.1, 0.1]).ok and detect_scale(S2, S2_DN, [None] * 4).ok
