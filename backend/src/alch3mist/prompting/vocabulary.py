"""The rewriter's one curated table: how materials look (data only).

Dictionaries translate words and WordNet says what they are; neither says what "crocodile skin" looks like to an
image model. The edit prompt adds that texture / colour / finish phrase for the materials listed here
("crocodile skin" -> "rugged olive-brown scutes, leathery texture, satin finish"). Also here: English adjectives that
name a material ("golden" -> gold), the colour words the parser keeps with their noun, and the English grammar words
the strict "is it English?" check accepts. Everything else comes from the language resources (:mod:`.lexicon`,
:mod:`.wordnet`).
"""

from __future__ import annotations

# fmt: off
# --- materials: what the edit prompt says about them (texture, colour, finish) -------------------------------------
MATERIAL_DETAILS: dict[str, str] = {
    "gold": "polished gold, warm yellow metallic sheen, mirror-like reflections",
    "silver": "polished silver, cool bright metallic sheen",
    "copper": "burnished copper, reddish-orange metallic sheen with a soft patina",
    "bronze": "cast bronze, warm brown metal with a green-tinged patina",
    "brass": "polished brass, warm golden-yellow metal",
    "iron": "dark forged iron, hammered texture, satin sheen",
    "steel": "brushed steel, fine directional grain, cool grey metallic finish",
    "chrome": "mirror chrome, perfectly reflective silver finish",
    "metal": "brushed metal, fine grain, metallic sheen",
    "wood": "carved wood, visible grain, warm brown tones, satin finish",
    "marble": "white marble with soft grey veins, smooth polished stone",
    "stone": "carved grey stone, rough granular texture, matte finish",
    "granite": "speckled granite, polished stone with grey and black flecks",
    "glass": "clear glass, transparent, crisp refractions and glossy highlights",
    "crystal": "faceted crystal, transparent, sparkling refractions",
    "diamond": "faceted diamond, transparent, brilliant prismatic sparkle",
    "ice": "translucent ice, frosty pale-blue surface with glossy wet highlights",
    "fire": "flickering orange and yellow flames, glowing embers, emissive light",
    "flames": "flickering orange and yellow flames, glowing embers, emissive light",
    "flame": "flickering orange and yellow flames, glowing embers, emissive light",
    "lava": "molten lava, glowing orange cracks in a black basalt crust",
    "water": "clear flowing water, transparent ripples with glossy highlights",
    "crocodile": "rugged olive-brown scutes, leathery texture, satin finish",
    "snake": "small overlapping glossy scales with a banded pattern",
    "leopard": "golden fur with black rosette spots",
    "zebra": "short fur with bold black and white stripes",
    "tiger": "orange fur with black stripes",
    "dragon": "large iridescent overlapping scales, hard and glossy",
    "leather": "supple leather, fine grain, satin sheen",
    "velvet": "soft velvet, dense short pile, deep rich colour, matte sheen",
    "silk": "smooth silk, flowing soft sheen",
    "wool": "knitted wool, soft fibrous texture, matte",
    "knitted wool": "chunky knitted wool, visible stitches, soft matte fibres",
    "cotton": "woven cotton fabric, soft matte weave",
    "denim": "blue denim, diagonal twill weave, visible stitching",
    "fabric": "woven fabric, soft matte weave",
    "porcelain": "glazed white porcelain, smooth glossy finish",
    "ceramic": "glazed ceramic, smooth glossy finish",
    "clay": "unglazed terracotta clay, warm orange-brown, matte and slightly rough",
    "jade": "polished green jade, translucent, smooth glossy finish",
    "obsidian": "glossy black obsidian, sharp glassy reflections",
    "amber": "translucent honey-coloured amber, warm inner glow",
    "pearl": "lustrous pearl, creamy white with soft iridescence",
    "mother-of-pearl": "iridescent mother-of-pearl, shimmering pastel sheen",
    "moss": "soft green moss, dense fuzzy texture",
    "grass": "dense green grass blades",
    "bark": "rough tree bark, deep brown furrows",
    "chocolate": "glossy milk chocolate, smooth rich brown surface",
    "candy": "glossy hard candy, translucent bright colours",
    "honey": "dripping golden honey, glossy and translucent",
    "cheese": "yellow cheese with small holes, waxy matte surface",
    "paper": "folded paper, crisp edges, matte white fibres",
    "cardboard": "corrugated cardboard, matte brown",
    "plastic": "smooth moulded plastic, glossy finish",
    "rubber": "matte rubber, soft slightly textured surface",
    "concrete": "raw concrete, grey porous matte surface",
    "brick": "red clay bricks with mortar lines",
    "rust": "corroded rusty metal, orange-brown flaking texture",
    "neon": "glowing neon tubes, saturated emissive colours",
    "snow": "packed white snow, soft granular sparkle",
    "sand": "fine golden sand, granular matte texture",
    "cloud": "soft white cloud vapour, fluffy and translucent",
    "smoke": "swirling grey smoke, wispy and translucent",
    "lightning": "crackling electric lightning, bright blue-white glow",
    "galaxy": "deep-space galaxy pattern, swirling nebulae and tiny glowing stars",
    "stars": "a field of tiny glowing stars on deep blue",
    "coral": "porous pink coral, intricate organic texture",
    "ivory": "smooth creamy ivory, soft satin sheen",
    "emerald": "faceted emerald, deep transparent green",
    "ruby": "faceted ruby, deep transparent red",
    "sapphire": "faceted sapphire, deep transparent blue",
    "quartz": "rose quartz, milky pink translucent crystal",
    "wicker": "woven wicker, interlaced natural fibres",
    "bamboo": "polished bamboo, segmented pale-green stalks",
    "cork": "porous cork, light brown granular texture",
    "mirror": "mirror surface, perfectly reflective",
    "slime": "glossy green slime, wet and dripping",
    "jelly": "wobbly translucent jelly, glossy",
    "lego": "interlocking plastic toy bricks, glossy primary colours",
    "golden": "polished gold, warm yellow metallic sheen, mirror-like reflections",
    "holographic": "holographic foil, rainbow iridescent reflections",
    "iridescent": "iridescent shimmering surface, shifting rainbow colours",
}

# English adjectives that name a material ("a golden cow" -> material "gold").
MATERIAL_ADJECTIVES: dict[str, str] = {
    "golden": "gold", "gilded": "gold", "wooden": "wood", "silvery": "silver", "metallic": "metal", "glassy": "glass",
    "icy": "ice", "fiery": "fire", "flaming": "fire", "furry": "fur", "rusty": "rust", "stony": "stone",
    "crystalline": "crystal", "marbled": "marble", "holographic": "holographic", "iridescent": "iridescent",
    "gilt": "gold", "woollen": "wool", "woolen": "wool", "silken": "silk", "velvety": "velvet", "leathern": "leather",
    "earthen": "clay", "brazen": "brass", "oaken": "wood", "silver": "silver",
}

# Patterns named after creatures: a material in "crocodile skin", a subject in "a crocodile made of gold".
ALSO_CREATURES: frozenset[str] = frozenset({"crocodile", "snake", "leopard", "zebra", "tiger", "dragon"})

COLOURS: frozenset[str] = frozenset(
    {"red", "orange", "yellow", "green", "blue", "purple", "violet", "pink", "black", "white", "grey", "gray", "brown",
     "beige", "turquoise", "cyan", "magenta", "teal", "navy", "crimson", "scarlet", "ochre", "indigo", "cream",
     "ivory", "cobalt blue", "navy blue", "sky blue", "dark", "light", "pale", "bright", "deep", "golden", "silver",
     "silvery", "multicoloured", "colourful", "colorful", "rainbow"}
)

# English words the strict check accepts besides WordNet's nouns, verbs, adjectives and adverbs.
ENGLISH_GRAMMAR_WORDS: frozenset[str] = frozenset(
    {"a", "an", "the", "some", "of", "in", "on", "with", "and", "or", "its", "their", "his", "her", "my", "from",
     "into", "at", "by", "for", "to", "without", "under", "over", "made", "covered", "one", "two", "three", "four",
     "five", "six", "seven", "eight", "nine", "ten", "single"}
)
# fmt: on
