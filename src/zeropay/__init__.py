"""ZeroPay: a micropayment platform with strong customer authentication built in."""

__version__ = "0.1.0"
