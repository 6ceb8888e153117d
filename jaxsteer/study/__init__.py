"""The paper's method on top of the toolkit: experiment configs, benchmark evaluation, the surgical
steering recipe (EN/LOC extraction and selection), PCA convergence, metrics, the transfer–localization
plane and the end-to-end pipeline. ``jaxsteer.steering`` and ``jaxsteer.model`` never import from here."""
