"""Extensions: a module placed here is imported before the first registry lookup, so the
members it registers (a pooling, a model, a front-end, a mixer, a data set layout; see
asc/registry.py) become allowed config values with nothing else to edit."""
