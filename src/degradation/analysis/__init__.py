"""Questions about why deep plain nets degrade, one module each: its computation, its figure and
its report section (``init_probes`` so far; the earlier diagnostics live in
``degradation.diagnostics``, ``plots`` and ``report``)."""
