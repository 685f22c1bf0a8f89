"""The pages' sections, one module each: a function that draws its section from what it is given."""
