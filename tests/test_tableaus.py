"""Tests for dynamicblocks.tableaus: the named Butcher tableaus and their validation."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

from dynamicblocks import TABLEAUS, ButcherTableau, get_tableau

# Textbook coefficients (Butcher 2008; Hairer, Norsett & Wanner 1993), written out
# independently of the library: name -> (order, c, a as a full square matrix, b).
EXPECTED = {
    "euler": (1, [0], [[0]], [1]),
    "midpoint": (2, [0, 1 / 2], [[0, 0], [1 / 2, 0]], [0, 1]),
    "heun": (2, [0, 1], [[0, 0], [1, 0]], [1 / 2, 1 / 2]),
    "ralston": (2, [0, 2 / 3], [[0, 0], [2 / 3, 0]], [1 / 4, 3 / 4]),
    "rk3": (3, [0, 1 / 2, 1], [[0, 0, 0], [1 / 2, 0, 0], [-1, 2, 0]], [1 / 6, 2 / 3, 1 / 6]),
    "ralston3": (
        3,
        [0, 1 / 2, 3 / 4],
        [[0, 0, 0], [1 / 2, 0, 0], [0, 3 / 4, 0]],
        [2 / 9, 1 / 3, 4 / 9],
    ),
    "ssprk3": (3, [0, 1, 1 / 2], [[0, 0, 0], [1, 0, 0], [1 / 4, 1 / 4, 0]], [1 / 6, 1 / 6, 2 / 3]),
    "rk4": (
        4,
        [0, 1 / 2, 1 / 2, 1],
        [[0, 0, 0, 0], [1 / 2, 0, 0, 0], [0, 1 / 2, 0, 0], [0, 0, 1, 0]],
        [1 / 6, 1 / 3, 1 / 3, 1 / 6],
    ),
    "rk4_38": (
        4,
        [0, 1 / 3, 2 / 3, 1],
        [[0, 0, 0, 0], [1 / 3, 0, 0, 0], [-1 / 3, 1, 0, 0], [1, -1, 1, 0]],
        [1 / 8, 3 / 8, 3 / 8, 1 / 8],
    ),
    "heun_euler": (2, [0, 1], [[0, 0], [1, 0]], [1 / 2, 1 / 2]),
    "bosh3": (
        3,
        [0, 1 / 2, 3 / 4, 1],
        [[0, 0, 0, 0], [1 / 2, 0, 0, 0], [0, 3 / 4, 0, 0], [2 / 9, 1 / 3, 4 / 9, 0]],
        [2 / 9, 1 / 3, 4 / 9, 0],
    ),
    "dopri5": (
        5,
        [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
        [
            [0, 0, 0, 0, 0, 0, 0],
            [1 / 5, 0, 0, 0, 0, 0, 0],
            [3 / 40, 9 / 40, 0, 0, 0, 0, 0],
            [44 / 45, -56 / 15, 32 / 9, 0, 0, 0, 0],
            [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0, 0],
            [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0, 0],
            [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
        ],
        [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
    ),
    "tsit5": (  # Tsitouras (2011), Table 1, to the digits published
        5,
        [0, 0.161, 0.327, 0.9, 0.9800255409045097, 1, 1],
        [
            [0, 0, 0, 0, 0, 0, 0],
            [0.161, 0, 0, 0, 0, 0, 0],
            [-0.008480655492356989, 0.335480655492357, 0, 0, 0, 0, 0],
            [2.8971530571054935, -6.359448489975075, 4.3622954328695815, 0, 0, 0, 0],
            [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525]
            + [0, 0, 0],
            [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401]
            + [-0.02826905039406838, 0, 0],
            [0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742]
            + [-3.290069515436081, 2.324710524099774, 0],
        ],
        [0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742]
        + [-3.290069515436081, 2.324710524099774, 0],
    ),
}

# The embedded weights of the pairs, and their orders.
EMBEDDED = {
    "heun_euler": (1, [1, 0]),
    "bosh3": (2, [7 / 24, 1 / 4, 1 / 3, 1 / 8]),
    "dopri5": (
        4,
        [1951 / 21600, 0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60],
    ),
    "tsit5": (  # b minus the published error weights (last one with its sign corrected)
        4,
        [
            0.09646076681806523 - 0.00178001105222577714,
            0.01 - 0.0008164344596567469,
            0.4798896504144996 + 0.007880878010261995,
            1.379008574103742 - 0.1447110071732629,
            -3.290069515436081 + 0.5823571654525552,
            2.324710524099774 - 0.45808210592918697,
            1 / 66,
        ],
    ),
}


def _order_residuals(a, b, c):
    """Residuals of the rooted-tree order conditions for orders 1..4, computed with NumPy."""
    a, b, c = np.asarray(a, float), np.asarray(b, float), np.asarray(c, float)
    return {
        1: [b.sum() - 1],
        2: [b @ c - 1 / 2],
        3: [b @ c**2 - 1 / 3, b @ a @ c - 1 / 6],
        4: [
            b @ c**3 - 1 / 4,
            b @ (c * (a @ c)) - 1 / 8,
            b @ a @ c**2 - 1 / 12,
            b @ a @ a @ c - 1 / 24,
        ],
    }


# --------------------------------------------------------------------------- named tableaus


def test_tableaus_has_exactly_the_expected_names():
    assert set(TABLEAUS) == set(EXPECTED)
    for key, tableau in TABLEAUS.items():
        assert isinstance(tableau, ButcherTableau)
        assert tableau.name == key


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_tableau_coefficients(name):
    order, c, a, b = EXPECTED[name]
    tableau = TABLEAUS[name]
    assert tableau.name == name
    assert tableau.order == order
    assert tableau.stages == len(b)
    assert isinstance(tableau.a, tuple) and all(isinstance(row, tuple) for row in tableau.a)
    assert isinstance(tableau.b, tuple) and isinstance(tableau.c, tuple)
    assert all(type(v) is float for v in (*tableau.b, *tableau.c, *sum(tableau.a, ())))
    np.testing.assert_allclose(tableau.c, c, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tableau.b, b, rtol=0, atol=1e-15)
    assert [len(row) for row in tableau.a] == [len(b)] * len(b)  # padded to square
    np.testing.assert_allclose(np.array(tableau.a), np.array(a, float), rtol=0, atol=1e-15)
    if name in EMBEDDED:
        order, embedded = EMBEDDED[name]
        assert tableau.embedded_order == order
        np.testing.assert_allclose(tableau.b_embedded, embedded, rtol=0, atol=1e-15)
        residuals = _order_residuals(tableau.a, tableau.b_embedded, tableau.c)
        for p in range(1, min(order, 4) + 1):
            np.testing.assert_allclose(residuals[p], 0.0, atol=1e-13)
        if order < 4:
            assert max(abs(r) for r in residuals[order + 1]) > 1e-4  # and not one order more
    else:
        assert tableau.b_embedded is None and tableau.embedded_order is None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_tableau_satisfies_its_order_conditions(name):
    tableau = TABLEAUS[name]
    residuals = _order_residuals(tableau.a, tableau.b, tableau.c)
    for p in range(1, min(tableau.order, 4) + 1):  # conditions written here up to order 4
        np.testing.assert_allclose(residuals[p], 0.0, atol=1e-14)
    if tableau.order < 4:
        # the order is sharp: some condition of the next order fails
        assert max(abs(r) for r in residuals[tableau.order + 1]) > 1e-3


@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if EXPECTED[n][0] < 4])
def test_named_tableau_claiming_one_order_more_is_rejected(name):
    t = TABLEAUS[name]
    with pytest.raises(ValueError, match=rf"claims order {t.order + 1} but violates"):
        ButcherTableau(name, t.order + 1, t.c, t.a, t.b)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_tableau_is_explicit_and_consistent(name):
    t = TABLEAUS[name]
    for i, row in enumerate(t.a):
        assert all(v == 0.0 for v in row[i:])
        assert math.isclose(t.c[i], sum(row), abs_tol=1e-15)
    assert t.c[0] == 0.0


# --------------------------------------------------------------------------- frozen dataclass


@pytest.mark.parametrize("field", ["name", "order", "a", "b", "c"])
def test_tableau_is_frozen(field):
    tableau = TABLEAUS["rk4"]
    before = getattr(tableau, field)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(tableau, field, 0)
    assert getattr(tableau, field) == before


def test_tableau_is_hashable_and_compares_by_value():
    t = TABLEAUS["heun"]
    copy = ButcherTableau("heun", 2, (0, 1), ((), (1,)), (0.5, 0.5))
    assert copy == t
    assert hash(copy) == hash(t)


# --------------------------------------------------------------------------- construction


def test_ragged_rows_are_padded_to_square():
    t = ButcherTableau("ragged", 3, (0, 0.5, 1), ((), (0.5,), (-1, 2)), (1 / 6, 2 / 3, 1 / 6))
    assert t.a == ((0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (-1.0, 2.0, 0.0))
    assert t.stages == 3


def test_ragged_and_square_rows_may_be_mixed():
    t = ButcherTableau("mixed", 2, [0, 0.5], [[0.0, 0.0], [0.5]], [0, 1])
    assert t.a == ((0.0, 0.0), (0.5, 0.0))
    assert t.c == (0.0, 0.5)
    assert t.b == (0.0, 1.0)


def test_user_defined_two_stage_order_two_scheme():
    # family: c2 = alpha, a21 = alpha, b2 = 1 / (2 alpha), b1 = 1 - b2; alpha = 1/4
    t = ButcherTableau("alpha_quarter", 2, (0, 0.25), ((), (0.25,)), (-1.0, 2.0))
    assert t.order == 2 and t.stages == 2
    assert t.a == ((0.0, 0.0), (0.25, 0.0))
    assert get_tableau(t) is t
    residuals = _order_residuals(t.a, t.b, t.c)
    np.testing.assert_allclose(residuals[1] + residuals[2], 0.0, atol=1e-15)
    # it is not third order
    with pytest.raises(ValueError, match="claims order 3"):
        ButcherTableau("alpha_quarter", 3, (0, 0.25), ((), (0.25,)), (-1.0, 2.0))


def test_c_must_equal_row_sums():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "tableau 'bad_c': c[1] = 0.6 but sum(a[1]) = 0.5; expected c_i = sum_j a_ij"
        ),
    ):
        ButcherTableau("bad_c", 1, (0, 0.6), ((), (0.5,)), (0.5, 0.5))


def test_b_must_sum_to_one():
    with pytest.raises(
        ValueError,
        match=re.escape(
            "tableau 'bad_b' claims order 1 but violates the order condition sum(b) = 1"
        ),
    ):
        ButcherTableau("bad_b", 1, (0, 1), ((), (1,)), (0.5, 0.4))


@pytest.mark.parametrize(
    "a, where",
    [
        (((0.0, 0.0), (0.5, 0.5)), "a[1][1] = 0.5"),
        (((0.0, 0.3), (0.5, 0.0)), "a[0][1] = 0.3"),
        (((0.2, 0.0), (1.0, 0.0)), "a[0][0] = 0.2"),
    ],
)
def test_non_explicit_is_rejected(a, where):
    c = tuple(sum(row) for row in a)
    pattern = rf"tableau 'implicit' is not explicit: {re.escape(where)}"
    with pytest.raises(ValueError, match=pattern):
        ButcherTableau("implicit", 1, c, a, (0.5, 0.5))


@pytest.mark.parametrize(
    "c, a, b, lengths",
    [
        ((0,), ((), (1,)), (0.5, 0.5), "len(c)=1, len(a)=2, len(b)=2"),
        ((0, 1), ((),), (0.5, 0.5), "len(c)=2, len(a)=1, len(b)=2"),
        ((0, 1), ((), (1,)), (1.0,), "len(c)=2, len(a)=2, len(b)=1"),
    ],
)
def test_mismatched_lengths_are_rejected(c, a, b, lengths):
    with pytest.raises(ValueError, match=re.escape(lengths)) as info:
        ButcherTableau("mismatch", 1, c, a, b)
    assert "same number of stages" in str(info.value)


def test_row_of_wrong_length_is_rejected():
    with pytest.raises(ValueError, match=re.escape("row 1 of a must have 1 or 2 entries, got 3")):
        ButcherTableau("long_row", 1, (0, 1), ((), (1, 0, 0)), (0.5, 0.5))


def test_empty_b_is_rejected():
    with pytest.raises(ValueError, match="b must have at least one entry"):
        ButcherTableau("empty", 1, (), (), ())


@pytest.mark.parametrize("order", [0, -1, 1.0, True, "1"])
def test_order_must_be_positive_int(order):
    pattern = rf"order must be a positive int, got {re.escape(repr(order))}"
    with pytest.raises(ValueError, match=pattern):
        ButcherTableau("bad_order", order, (0,), ((),), (1,))


def test_euler_coefficients_claiming_order_two_are_rejected():
    with pytest.raises(
        ValueError,
        match=re.escape("tableau 'fake' claims order 2 but violates the order condition b.c = 1/2"),
    ):
        ButcherTableau("fake", 2, (0,), ((),), (1,))


def test_rk3_claiming_order_four_is_rejected():
    with pytest.raises(ValueError, match=r"claims order 4 but violates the order condition b\.\("):
        ButcherTableau("fake", 4, (0, 0.5, 1), ((), (0.5,), (-1, 2)), (1 / 6, 2 / 3, 1 / 6))


@pytest.mark.parametrize(
    "c, a, b",
    [
        ((0, 1), ((), (1,)), (float("nan"), 0.5)),
        ((0, float("inf")), ((), (float("inf"),)), (0.5, 0.5)),
        ((0, float("nan")), ((), (1,)), (0.5, 0.5)),
        ((0, 1), ((), (float("nan"),)), (0.5, 0.5)),
    ],
    ids=["b-nan", "a-c-inf", "c-nan", "a-nan"],
)
def test_non_finite_coefficients_are_rejected(c, a, b):
    with pytest.raises(ValueError, match="tableau 'nonfinite': all coefficients must be finite"):
        ButcherTableau("nonfinite", 1, c, a, b)


def test_order_condition_tolerance_accepts_rounding_only():
    third = 1 / 3
    ok = ButcherTableau("near", 1, (0, 0, 0), ((), (0,), (0, 0)), (third, third, 1 - 2 * third))
    assert ok.stages == 3
    with pytest.raises(ValueError, match="sum"):
        ButcherTableau("off", 1, (0, 0), ((), (0,)), (0.5, 0.5 + 1e-9))


# --------------------------------------------------------------------------- get_tableau


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_get_tableau_by_name(name):
    assert get_tableau(name) is TABLEAUS[name]


@pytest.mark.parametrize(
    "spelling, name",
    [("RK4", "rk4"), ("Euler", "euler"), ("SspRK3", "ssprk3"), ("RK4_38", "rk4_38")],
)
def test_get_tableau_is_case_insensitive(spelling, name):
    assert get_tableau(spelling) is TABLEAUS[name]


def test_get_tableau_passes_a_tableau_through():
    custom = ButcherTableau("custom", 1, (0,), ((),), (1,))
    assert get_tableau(custom) is custom
    assert get_tableau(TABLEAUS["rk4"]) is TABLEAUS["rk4"]


@pytest.mark.parametrize("name", ["rk5", "", "runge-kutta", "rk4 "])
def test_get_tableau_unknown_name_lists_known_names(name):
    with pytest.raises(ValueError, match=rf"^unknown scheme {re.escape(repr(name))}") as info:
        get_tableau(name)
    message = str(info.value)
    for known in EXPECTED:
        assert repr(known) in message
    assert "ButcherTableau" in message


@pytest.mark.parametrize(
    "scheme, type_name",
    [(4, "int"), (None, "NoneType"), ({"rk4": 1}, "dict"), (("rk4",), "tuple")],
)
def test_get_tableau_rejects_other_types(scheme, type_name):
    pattern = rf"scheme must be a name or a ButcherTableau, got {type_name}$"
    with pytest.raises(TypeError, match=pattern):
        get_tableau(scheme)
