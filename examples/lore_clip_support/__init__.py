"""The main job's plumbing (`examples/lore_clip.py`): jobs and their modes, method comparison, the epsilon
series. Not part of the `lore` library; the examples import it from this folder."""
