"""The dashboard's Overview: run counts, waits, durations and failure rates over a window,
and the window's failures grouped by error (:mod:`shared.overview.queries`); ignored
groups are stored per environment (:mod:`shared.overview.models`)."""
