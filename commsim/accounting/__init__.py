"""Accounting: the one place bytes (:mod:`.bytes`) and CPU (:mod:`.cpu`) are counted."""
