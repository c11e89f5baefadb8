"""The model pool: devices, lazy loading, sharing and locks for every model."""
