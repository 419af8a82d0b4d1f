"""Category and defect names of the real datasets, and their archive file names.

Used by the registry (``iad datasets list``), by the synthetic datasets (which reuse the real
names so every downstream table looks like the real thing) and, later, by the question bank
(distractors for defect classification come from a category's own defect names first).

Names marked *unverified* in the module docstrings of each dataset were recalled or taken
from third-party code; nothing asserts their counts.
"""

from __future__ import annotations

MVTEC_AD_DEFECTS: dict[str, tuple[str, ...]] = {
    "bottle": ("broken_large", "broken_small", "contamination"),
    "cable": (
        "bent_wire",
        "cable_swap",
        "combined",
        "cut_inner_insulation",
        "cut_outer_insulation",
        "missing_cable",
        "missing_wire",
        "poke_insulation",
    ),
    "capsule": ("crack", "faulty_imprint", "poke", "scratch", "squeeze"),
    "carpet": ("color", "cut", "hole", "metal_contamination", "thread"),
    "grid": ("bent", "broken", "glue", "metal_contamination", "thread"),
    "hazelnut": ("crack", "cut", "hole", "print"),
    "leather": ("color", "cut", "fold", "glue", "poke"),
    "metal_nut": ("bent", "color", "flip", "scratch"),
    "pill": (
        "color",
        "combined",
        "contamination",
        "crack",
        "faulty_imprint",
        "pill_type",
        "scratch",
    ),
    "screw": ("manipulated_front", "scratch_head", "scratch_neck", "thread_side", "thread_top"),
    "tile": ("crack", "glue_strip", "gray_stroke", "oil", "rough"),
    "toothbrush": ("defective",),
    "transistor": ("bent_lead", "cut_lead", "damaged_case", "misplaced"),
    "wood": ("color", "combined", "hole", "liquid", "scratch"),
    "zipper": (
        "broken_teeth",
        "combined",
        "fabric_border",
        "fabric_interior",
        "rough",
        "split_teeth",
        "squeezed_teeth",
    ),
}

# VisA's 1cls split collapses every defect type into ``bad``; the raw tree keeps per-image
# defect names in image_anno.csv.
# VisA: the defect classes of spot-diff's ``utils/id2class.py`` (amazon-science/spot-diff @
# 2a692ab), the ids of the index-valued masks, in id order (id = position + 1), names in
# snake_case with the source's spelling; BACKGROUND (0) and the catch-all "Other" (the last
# id where present) are left out.
VISA_DEFECTS: dict[str, tuple[str, ...]] = {
    "candle": (
        "chunk_of_wax_missing",
        "damaged_corner_of_packaging",
        "weird_candle_wick",
        "different_colour_spot",
        "extra_wax_in_candle",
        "foreign_particals_on_candle",
        "wax_melded_out_of_the_candle",
    ),
    "capsules": ("bubble", "discolor", "scratch", "leak", "misshape"),
    "cashew": (
        "burnt",
        "corner_or_edge_breakage",
        "different_colour_spot",
        "middle_breakage",
        "small_holes",
        "small_scratches",
        "stuck_together",
        "same_colour_spot",
    ),
    "chewinggum": (
        "chunk_of_gum_missing",
        "corner_missing",
        "scratches",
        "similar_colour_spot",
        "small_cracks",
    ),
    "fryum": (
        "burnt",
        "corner_or_edge_breakage",
        "different_colour_spot",
        "fryum_stuck_together",
        "middle_breakage",
        "similar_colour_spot",
        "small_scratches",
    ),
    "macaroni1": (
        "chip_around_edge_and_corner",
        "different_colour_spot",
        "middle_breakage",
        "similar_colour_spot",
        "small_cracks",
        "small_scratches",
    ),
    "macaroni2": (
        "breakage_down_the_middle",
        "color_spot_similar_to_the_object",
        "different_color_spot",
        "small_chip_around_edge",
        "small_cracks",
        "small_scratches",
    ),
    "pcb1": ("bent", "melt", "scratch", "missing"),
    "pcb2": ("bent", "melt", "scratch", "missing"),
    "pcb3": ("bent", "melt", "scratch", "missing"),
    "pcb4": ("burnt", "scratch", "missing", "damage", "extra", "wrong_place", "dirt"),
    "pipe_fryum": (
        "burnt",
        "corner_and_edge_breakage",
        "different_colour_spot",
        "middle_breakage",
        "similar_colour_spot",
        "small_scratches",
        "stuck_together",
        "small_cracks",
    ),
}

MVTEC_LOCO_DEFECTS: dict[str, tuple[str, ...]] = {
    cat: ("logical_anomalies", "structural_anomalies")
    for cat in ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
}

# LOCO's defects_config.json names the concrete defect behind each mask value; these are
# the kinds of names it uses (unverified per category).
MVTEC_LOCO_CONFIG_DEFECTS: tuple[str, ...] = (
    "missing_part",
    "extra_part",
    "wrong_position",
    "contamination",
    "damage",
)

MPDD_DEFECTS: dict[str, tuple[str, ...]] = {
    "bracket_black": ("hole", "scratches"),
    "bracket_brown": ("bend_and_parts_mismatch", "parts_mismatch"),
    "bracket_white": ("defective_painting", "scratches"),
    "connector": ("parts_mismatch",),
    "metal_plate": ("major_rust", "scratches", "total_rust"),
    "tubes": ("anomalous",),
}

# GoodsAD: the per-category defect keys of MMAD's domain_knowledge.json (jam-cc/MMAD @
# bad03b44c30fdb4d0e1774e07e0f245fbaae3b6c, dataset/MMAD/domain_knowledge.json, "GoodsAD"
# section, "good" left out); MMAD keeps GoodsAD's own layout, so these are the test/ folder
# names. The per-category counts agree with the "Anomaly type" column of GoodsAD's README
# (jianzhang96/GoodsAD @ 3634130426cff1841ef4af837c2b3860db4e35ff, README.md): 3, 3, 3, 3,
# 2 and 1 for drink_bottle, drink_can, food_bottle, food_box, food_package, cigarette_box.
GOODSAD_DEFECTS: dict[str, tuple[str, ...]] = {
    "cigarette_box": ("opened",),
    "drink_bottle": ("cap_half_open", "cap_open", "surface_damage"),
    "drink_can": ("deformation", "straw_missing", "surface_damage"),
    "food_bottle": ("deformation", "opened", "surface_damage"),
    "food_box": ("deformation", "opened", "surface_damage"),
    "food_package": ("broken", "surface_anomaly"),
}

DTD_SYNTHETIC_DEFECTS: dict[str, tuple[str, ...]] = {
    cat: ("bad",)
    for cat in (
        "Blotchy_099",
        "Fibrous_183",
        "Marbled_078",
        "Matted_069",
        "Mesh_114",
        "Perforated_037",
        "Stratified_154",
        "Woven_001",
        "Woven_068",
        "Woven_104",
        "Woven_125",
        "Woven_127",
    )
}

# MVTec 3D-AD: test/ folder names. Only tire is checked against files from the dataset:
# its class_ids.json ({"255": "contamination", "254": "cut", "253": "hole", "0": "good"})
# and test/ folders (combined, contamination, cut, hole) in a public copy of MVTec's
# review subset (yagamieren09/Automated-Defect-Detection-System-using-AI-vision @
# bd3a0214078903388351d4292c82a09ad8800fbf, dataset/mvtec_3d/tire/). For the other nine
# categories no primary source was found (the paper's table and the other categories'
# class_ids.json were not read); the lists agree with third-party code whose paths name
# these folders, which is corroboration, not proof. "combined" holds images with several
# defect kinds and has no class id of its own.
MVTEC_3D_DEFECTS: dict[str, tuple[str, ...]] = {
    "bagel": ("combined", "contamination", "crack", "hole"),
    "cable_gland": ("bent", "cut", "hole", "thread"),
    "carrot": ("combined", "contamination", "crack", "cut", "hole"),
    "cookie": ("combined", "contamination", "crack", "hole"),
    "dowel": ("bent", "combined", "contamination", "cut"),
    "foam": ("color", "combined", "contamination", "cut"),
    "peach": ("combined", "contamination", "cut", "hole"),
    "potato": ("combined", "contamination", "cut", "hole"),
    "rope": ("contamination", "cut", "open"),
    "tire": ("combined", "contamination", "cut", "hole"),
}

# DAGM has no defect names: one weakly labelled defect class per texture class.
DAGM_DEFECTS: dict[str, tuple[str, ...]] = {f"Class{i}": ("defect",) for i in range(1, 11)}

# MMAD's query sets and the folder each one has in ALL_DATA.
MMAD_SOURCES: dict[str, tuple[str, ...]] = {
    "DS-MVTec": tuple(MVTEC_AD_DEFECTS),
    "MVTec-LOCO": tuple(MVTEC_LOCO_DEFECTS),
    "VisA": tuple(VISA_DEFECTS),
    "GoodsAD": tuple(GOODSAD_DEFECTS),
}

DEFECTS: dict[str, dict[str, tuple[str, ...]]] = {
    "mvtec_ad": MVTEC_AD_DEFECTS,
    "visa": VISA_DEFECTS,
    "mvtec_loco": MVTEC_LOCO_DEFECTS,
    "goodsad": GOODSAD_DEFECTS,
    "mpdd": MPDD_DEFECTS,
    "mvtec_3d": MVTEC_3D_DEFECTS,
    "dtd_synthetic": DTD_SYNTHETIC_DEFECTS,
    "dagm": DAGM_DEFECTS,
}

# File names of each dataset's main archive in <data-dir>/.downloads/. For the manual
# datasets no canonical archive exists; these are the names we give a packed copy.
ARCHIVE_NAMES: dict[str, str] = {
    "mvtec_ad": "mvtec_anomaly_detection.tar.xz",
    "visa": "VisA_20220922.tar",
    "mvtec_loco": "mvtec_loco_anomaly_detection.tar.xz",
    "goodsad": "GoodsAD.zip",
    "mpdd": "MPDD.zip",
    "mvtec_3d": "mvtec_3d_anomaly_detection.tar.xz",
    "dtd_synthetic": "DTD_Synthetic.zip",
    "dagm": "DAGM_2007.zip",
    "mmad": "ALL_DATA.zip",
}

DATASET_KEYS: tuple[str, ...] = (
    "mvtec_ad",
    "visa",
    "mvtec_loco",
    "goodsad",
    "mpdd",
    "mvtec_3d",
    "dtd_synthetic",
    "dagm",
    "mmad",
)


def categories(key: str) -> tuple[str, ...]:
    """Category names of a dataset (for MMAD: every query category of its four sources).

    >>> categories("mvtec_loco")[:2]
    ('breakfast_box', 'juice_bottle')
    >>> len(categories("mmad"))
    38
    """
    if key == "mmad":
        return tuple(cat for cats in MMAD_SOURCES.values() for cat in cats)
    return tuple(DEFECTS[key])
