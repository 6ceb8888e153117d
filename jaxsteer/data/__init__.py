"""Datasets of the paper, read from local files (layout in :mod:`jaxsteer.data.files`) or the hub."""

from jaxsteer.data.blend import BlendMCQuestion, BlendQuestion, load_blend, load_blend_mc, should_skip
from jaxsteer.data.decontext import context_pair, contextualize, decontextualize, loc_pairs
from jaxsteer.data.flores import ParallelPair, load_flores, load_flores_pairs
from jaxsteer.data.gmmlu import MCQuestion, align_parallel, load_gmmlu
from jaxsteer.data.languages import DEFAULT_LANGUAGES, LANGUAGES, Language, language
from jaxsteer.data.oasst import OasstPair, load_oasst1_pairs, load_oasst_xx, top_ranked_pairs
from jaxsteer.data.prompts import MCPrompt, blend_prompt, mc_prompt, parallel_mc_pairs
from jaxsteer.data.splits import Split, load_splits, make_split, make_splits, save_splits

__all__ = [
    "DEFAULT_LANGUAGES",
    "LANGUAGES",
    "BlendMCQuestion",
    "BlendQuestion",
    "Language",
    "MCPrompt",
    "MCQuestion",
    "OasstPair",
    "ParallelPair",
    "Split",
    "align_parallel",
    "blend_prompt",
    "context_pair",
    "contextualize",
    "decontextualize",
    "language",
    "load_blend",
    "load_blend_mc",
    "load_flores",
    "load_flores_pairs",
    "load_gmmlu",
    "load_oasst1_pairs",
    "load_oasst_xx",
    "load_splits",
    "loc_pairs",
    "make_split",
    "make_splits",
    "mc_prompt",
    "parallel_mc_pairs",
    "save_splits",
    "should_skip",
    "top_ranked_pairs",
]
