"""The web app's tabs: each module's `build(ctx)` creates and wires its widgets, turning them
into calls of the `fabe` library and its results back into widget values."""
