"""Test-support code: software clients that play the browser and device side of the API."""
