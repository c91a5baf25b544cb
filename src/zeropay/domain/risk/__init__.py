"""The risk engine: events, its versioned configuration, what it remembers, and its decisions."""
