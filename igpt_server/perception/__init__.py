"""The perception unit: gestures (pointing) and the geometry that turns them into masks."""
