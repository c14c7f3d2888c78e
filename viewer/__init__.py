"""The PyQt6 programs: the expert's viewer and the novice's panel. Only this package uses Qt."""
