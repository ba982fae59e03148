"""The analysis of a sweep, one module per question (each holds its computation, its figure and
its report section; :mod:`degradation.report` walks them), the claims ledger (``claims``; its
old name ``ledger``), plus what they share: ``base`` (context and section), ``select`` (which
runs compare), ``stats`` (intervals, margins and how they are written), ``style`` (figures) and
``trained`` (rebuilding trained nets for probes)."""
