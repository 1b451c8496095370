"""Two4Two: a generator of synthetic images of two abstract animals, Peaky and Stretchy."""
