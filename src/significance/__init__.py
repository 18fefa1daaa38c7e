"""significance: two-stage classification of photographs of works of art."""

__version__ = "0.1.0"
