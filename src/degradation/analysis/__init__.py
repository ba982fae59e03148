"""The analysis of a sweep, one module per question (each holds its computation, its figure and
its report section; :mod:`degradation.report` walks them), plus what they share: ``base``
(context and section), ``stats`` (intervals), ``style`` (figures) and ``trained`` (rebuilding
trained nets for probes)."""
