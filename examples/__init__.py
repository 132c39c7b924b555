"""Runnable examples of tierpipe; ``examples.smart_city`` is the main demo (``tierpipe demo``)."""
