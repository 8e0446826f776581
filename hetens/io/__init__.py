"""Reading and writing files: one home for what every command shares.

- :mod:`~hetens.io.extxyz`: the one extxyz frame scanner (frame layout,
  byte spans, strict errors naming file and frame) and one frame as text.
- :mod:`~hetens.io.extxyz_arrays`: the fast extxyz reader (all frames into
  flat arrays, vectorised).
- :mod:`~hetens.io.files`: output paths checked before any work, atomic
  writes, staged outputs that appear only when complete.
- :mod:`~hetens.io.progress`: the progress reporter (a tqdm bar on a
  terminal, a log line now and then otherwise).
- :mod:`~hetens.io.keys`: every ``hetens_*`` key written into frames.

Nothing here imports a model package; ASE and tqdm are imported on use.
"""
