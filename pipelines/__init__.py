"""Calibration math: humidity conversions, plateau detection, GUM uncertainty budgets.

Every function here is a pure function of numbers or numpy arrays, with its units and its
reference (paper, standard, equation) in its docstring; reading runs, writing results and
parsing config live elsewhere.
"""
