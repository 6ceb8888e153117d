"""The Gemma-3 text decoder as pure functions over a params pytree.

Shape symbols of the jaxtyping annotations, one meaning each across the package (the tests check
them: ``tests/conftest.py`` switches jaxtyping + beartype on)::

    B    batch rows                          T    token positions (queries)
    S    key positions / KV-cache slots      W    slots of a sliding-window ring buffer
    N    new (generated) tokens              P    pairs (contrastive / preference losses)
    D    hidden size (residual stream)       F    MLP intermediate size
    V    vocabulary                          L    decoder layers (``*L``: zero or one layer axes)
    n    layers of a contiguous slice        Lp1  L + 1 hidden states (embeddings, then each block)
    H    query heads                         K    key/value heads (GQA)
    Dh   head dimension                      R    rotary half-width, Dh // 2 (cos/sin tables)
    O I  out / in features of a linear       r    LoRA rank
    Bd   rows of a steering delta: 1 (shared by the batch) or B
    G    grid points of a sweep (``*G``: the leading γ-grid axes of a ``Steering``)
    J    index axes of gathered positions (``*J``)
    Tp   T padded up to whole kernel blocks (splash attention)
    2    local (0) / global (1) rotary tables ``""`` a scalar

A leading ``_`` marks an axis named for the reader but not checked (``_heads`` is H or K); ``#``
allows a size-1 axis that broadcasts (``#B``: a mask shared by every row).
"""
