"""From predictions to a better catalogue: enrich the annotations table, review, merge back."""
