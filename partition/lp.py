"""A mixed-integer linear program built as plain lists and solved by HiGHS (``highspy``).

:class:`LinearModel` collects columns and rows, :class:`Lin` is a linear expression
(``{column: coefficient}`` + constant), :func:`solve_with_highs` hands the model to HiGHS as one
CSC matrix, with a start for its integer columns. The formulation itself is in ``milp.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["LinearModel", "Lin", "lin_sum", "solve_with_highs"]


class LinearModel:
    """Columns and rows of a MILP, built as lists, handed to HiGHS as one CSC matrix."""

    def __init__(self) -> None:
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[bool] = []
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []

    def var(self, lower: float = 0.0, upper: float = 1.0, integer: bool = False) -> int:
        self.lower.append(lower)
        self.upper.append(upper)
        self.integer.append(integer)
        return len(self.lower) - 1

    def row(self, terms: Mapping[int, float] | Sequence[tuple[int, float]], lo: float = -np.inf, hi: float = np.inf) -> None:
        r = len(self.row_lo)
        for col, val in terms.items() if isinstance(terms, Mapping) else terms:
            if val != 0.0:
                self.rows.append(r)
                self.cols.append(col)
                self.vals.append(val)
        self.row_lo.append(lo)
        self.row_hi.append(hi)


class Lin:
    """A linear expression: ``{column: coefficient}`` + constant."""

    def __init__(self) -> None:
        self.terms: dict[int, float] = {}
        self.const = 0.0

    def add(self, col: int | None, coef: float) -> None:
        if col is None:
            self.const += coef
        elif coef != 0.0:
            self.terms[col] = self.terms.get(col, 0.0) + coef


def lin_sum(lins: Sequence[Lin]) -> Lin:
    out = Lin()
    for lin in lins:
        for col, val in lin.terms.items():
            out.add(col, val)
        out.const += lin.const
    return out


def _quiet_highs():
    """A HiGHS instance whose copyright banner (printed by its C++ constructor on file descriptor 1,
    before any option can be set) does not reach stdout: it would break a table or a spinner line."""
    import highspy

    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
    h.setOptionValue("output_flag", False)
    return h


def solve_with_highs(
    m: LinearModel,
    cost: np.ndarray,
    offset: float,
    rel_gap: float,
    time_limit_s: float | None,
    start_cols: list[int],
    start_vals: list[float],
):
    """Hand the model to HiGHS (one CSC matrix), with a start for its integer columns, and solve it."""
    import highspy

    h = _quiet_highs()
    h.setOptionValue("mip_rel_gap", rel_gap)
    h.setOptionValue("mip_abs_gap", 1e-9)
    h.setOptionValue("threads", 1)
    # presolve costs more than it saves on these models: 2,000-op network-shaped DAGs prove optimal
    # in half the time without it (bench_partition), and ResNet-50 over smart_city too
    h.setOptionValue("presolve", "off")
    if time_limit_s is not None:
        h.setOptionValue("time_limit", time_limit_s)
    lp = highspy.HighsLp()
    lp.num_col_ = len(m.lower)
    lp.num_row_ = len(m.row_lo)
    lp.col_cost_ = cost
    lp.col_lower_ = np.array(m.lower)
    lp.col_upper_ = np.array(m.upper)
    lp.row_lower_ = np.array(m.row_lo)
    lp.row_upper_ = np.array(m.row_hi)
    lp.offset_ = offset
    matrix = sp.csc_matrix((m.vals, (m.rows, m.cols)), shape=(lp.num_row_, lp.num_col_))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    lp.a_matrix_.num_col_ = lp.num_col_
    lp.a_matrix_.num_row_ = lp.num_row_
    lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in m.integer]
    h.passModel(lp)
    if start_cols:
        h.setSolution(len(start_cols), np.array(start_cols, dtype=np.int32), np.array(start_vals, dtype=float))
    h.run()
    return h
