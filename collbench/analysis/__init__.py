"""Analysis of results: compare, plot, calibrate, the α-β-γ cost model and ``--algo auto``.

Nothing here is imported by the measuring path unless asked for (``--algo auto`` imports
:mod:`.select`); matplotlib is imported only by :mod:`.plot`, and only when a plot is drawn.
"""
