"""The controller: observe the world, decide (purely), act; one tick at a time."""
