"""The offline rewriter's small built-in vocabulary (data only).

Keys are *folded*: lower case, accents removed (see ``offline.fold``), so "genérame", "Génère" and "generame" all
match. Spanish and French words are translated to English because FLUX.1's T5/CLIP text encoders were trained
mostly on English captions: "a cow with crocodile skin" gives a far better image than "una vaca con piel de
cocodrilo". Words that are not in the vocabulary are kept as the user wrote them.
"""

from __future__ import annotations

# fmt: off

# --- request verbs and politeness, stripped from the start of a request (token sequences, folded) ---------------
LEADING_FILLERS: tuple[str, ...] = (
    # English
    "please", "can you", "could you", "would you", "will you", "i want", "i would like", "i'd like", "i need",
    "generate", "create", "make", "draw", "render", "build", "design", "give", "show", "produce", "sculpt",
    "model", "imagine", "me", "us", "for me", "a 3d model of", "a 3d render of", "a 3d asset of", "an image of",
    "a picture of", "a photo of", "a render of", "3d model of", "3d", "of",
    # Spanish
    "por favor", "puedes", "podrias", "quiero", "quisiera", "necesito", "generame", "genera", "generar", "crea",
    "creame", "crear", "hazme", "haz", "hacer", "dibujame", "dibuja", "renderiza", "renderizame", "dame",
    "muestrame", "disena", "disename", "modela", "modelame", "un modelo 3d de", "una imagen de", "una foto de",
    "un render de", "modelo 3d de",
    # French
    "s'il te plait", "s'il vous plait", "stp", "svp", "peux-tu", "pourrais-tu", "pouvez-vous", "je veux",
    "je voudrais", "j'aimerais", "genere-moi", "genere", "generer", "cree-moi", "cree", "creer", "fais-moi", "fais",
    "faire", "dessine-moi", "dessine", "donne-moi", "montre-moi", "modelise", "modelise-moi", "moi",
    "un modele 3d de", "une image de", "une photo de", "un rendu de",
)

# --- connectors between the object and its materials (folded token sequences) ------------------------------------
# Strong connectors split at their first occurrence; weak ones ("de", "en", "in", "of") only where a material word
# follows (see offline._split_subject), so "une tasse de café en porcelaine" splits at "en", not at "de".
STRONG_CONNECTORS: tuple[str, ...] = (
    "made out of", "made of", "made from", "carved out of", "carved from", "built from", "crafted from", "covered in",
    "covered with", "out of", "with", "wearing",
    "hecho de", "hecha de", "hechos de", "hechas de", "hecho en", "hecha en", "cubierto de", "cubierta de",
    "cubierto con", "cubierta con", "tallado en", "tallada en", "forrado de", "forrada de", "con",
    "fait de", "faite de", "faits de", "faites de", "fait en", "faite en", "recouvert de", "recouverte de",
    "couvert de", "couverte de", "avec", "a la", "au", "aux",
    # a few German / Italian / Portuguese ones, so those requests split too (they are not translated)
    "mit", "aus", "fatto di", "fatta di", "feito de", "feita de", "com",
)
WEAK_CONNECTORS: tuple[str, ...] = ("in", "of", "de", "en", "del", "du", "d'", "di", "em")

# --- separators between several materials -------------------------------------------------------------------------
MATERIAL_SEPARATORS: frozenset[str] = frozenset({",", ";", "and", "y", "e", "et", "und", "plus", "&"})

# --- translation tables (folded source word -> English) -----------------------------------------------------------
_COMMON_ES: dict[str, str] = {
    "un": "a", "una": "a", "uno": "one", "unos": "some", "unas": "some", "el": "the", "la": "the", "los": "the",
    "las": "the", "lo": "the", "con": "with", "de": "of", "del": "of the", "y": "and", "e": "and", "o": "or",
    "u": "or", "en": "in", "sobre": "on", "su": "its", "sus": "its", "muy": "very", "mi": "my", "hecho": "made",
    "hecha": "made", "hechos": "made", "hechas": "made", "cubierto": "covered", "cubierta": "covered", "que": "that",
    "sin": "without", "dos": "two", "tres": "three", "pequeno": "small", "pequena": "small", "grande": "big",
    "gigante": "giant", "viejo": "old", "vieja": "old", "antiguo": "ancient", "antigua": "ancient",
}
_COMMON_FR: dict[str, str] = {
    "un": "a", "une": "a", "des": "some", "le": "the", "la": "the", "les": "the", "l'": "the", "avec": "with",
    "de": "of", "d'": "of", "du": "of the", "et": "and", "ou": "or", "en": "in", "sur": "on", "sa": "its",
    "son": "its", "ses": "its", "tres": "very", "a": "with", "au": "with the", "aux": "with", "fait": "made",
    "faite": "made", "faits": "made", "faites": "made", "recouvert": "covered", "recouverte": "covered",
    "couvert": "covered", "couverte": "covered", "qui": "that", "sans": "without", "deux": "two", "trois": "three",
    "petit": "small", "petite": "small", "grand": "big", "grande": "big", "geant": "giant", "geante": "giant",
    "vieux": "old", "vieille": "old", "ancien": "ancient", "ancienne": "ancient",
}

# English word -> (Spanish words, French words). Objects, animals, body parts / surface features, materials.
_NOUNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # animals and creatures
    "cow": (("vaca",), ("vache",)), "bull": (("toro",), ("taureau",)), "horse": (("caballo",), ("cheval",)),
    "dog": (("perro",), ("chien",)), "cat": (("gato",), ("chat",)), "bird": (("pajaro", "ave"), ("oiseau",)),
    "fish": (("pez",), ("poisson",)), "lion": (("leon",), ("lion",)), "tiger": (("tigre",), ("tigre",)),
    "elephant": (("elefante",), ("elephant",)), "bear": (("oso",), ("ours",)), "rabbit": (("conejo",), ("lapin",)),
    "dragon": (("dragon",), ("dragon",)), "owl": (("buho", "lechuza"), ("hibou", "chouette")),
    "fox": (("zorro",), ("renard",)), "wolf": (("lobo",), ("loup",)), "deer": (("ciervo",), ("cerf",)),
    "turtle": (("tortuga",), ("tortue",)), "frog": (("rana",), ("grenouille",)),
    "snake": (("serpiente",), ("serpent",)), "crocodile": (("cocodrilo",), ("crocodile",)),
    "duck": (("pato",), ("canard",)), "chicken": (("gallina", "pollo"), ("poule", "poulet")),
    "pig": (("cerdo", "cerdito"), ("cochon",)), "sheep": (("oveja",), ("mouton",)), "goat": (("cabra",), ("chevre",)),
    "mouse": (("raton",), ("souris",)), "shark": (("tiburon",), ("requin",)), "whale": (("ballena",), ("baleine",)),
    "octopus": (("pulpo",), ("pieuvre",)), "butterfly": (("mariposa",), ("papillon",)),
    "bee": (("abeja",), ("abeille",)), "spider": (("arana",), ("araignee",)), "unicorn": (("unicornio",), ("licorne",)),
    "leopard": (("leopardo",), ("leopard",)), "zebra": (("cebra",), ("zebre",)), "giraffe": (("jirafa",), ("girafe",)),
    "monkey": (("mono",), ("singe",)), "eagle": (("aguila",), ("aigle",)), "peacock": (("pavo real",), ("paon",)),
    "dinosaur": (("dinosaurio",), ("dinosaure",)),
    "teddy bear": (("osito de peluche", "peluche"), ("ours en peluche",)),
    # objects
    "skull": (("calavera", "craneo"), ("crane",)), "chair": (("silla",), ("chaise",)),
    "armchair": (("sillon",), ("fauteuil",)), "table": (("mesa",), ("table",)), "lamp": (("lampara",), ("lampe",)),
    "vase": (("jarron", "florero"), ("vase",)), "cup": (("taza",), ("tasse",)), "teapot": (("tetera",), ("theiere",)),
    "bottle": (("botella",), ("bouteille",)), "car": (("coche", "auto", "carro"), ("voiture",)),
    "bicycle": (("bicicleta",), ("velo",)), "boat": (("barco",), ("bateau",)), "robot": (("robot",), ("robot",)),
    "helmet": (("casco",), ("casque",)), "sword": (("espada",), ("epee",)), "shield": (("escudo",), ("bouclier",)),
    "crown": (("corona",), ("couronne",)), "ring": (("anillo",), ("bague",)), "shoe": (("zapato",), ("chaussure",)),
    "sneaker": (("zapatilla",), ("basket",)), "boot": (("bota",), ("botte",)), "guitar": (("guitarra",), ("guitare",)),
    "statue": (("estatua",), ("statue",)), "bust": (("busto",), ("buste",)), "tree": (("arbol",), ("arbre",)),
    "flower": (("flor",), ("fleur",)), "rose": (("rosa",), ("rose",)), "apple": (("manzana",), ("pomme",)),
    "pumpkin": (("calabaza",), ("citrouille",)), "house": (("casa",), ("maison",)),
    "castle": (("castillo",), ("chateau",)), "mushroom": (("seta", "hongo"), ("champignon",)),
    "heart": (("corazon",), ("coeur",)), "hand": (("mano",), ("main",)), "head": (("cabeza",), ("tete",)),
    "key": (("llave",), ("cle",)), "clock": (("reloj",), ("horloge",)), "watch": (("reloj de pulsera",), ("montre",)),
    "book": (("libro",), ("livre",)), "bag": (("bolso",), ("sac",)), "hat": (("sombrero",), ("chapeau",)),
    "mask": (("mascara",), ("masque",)), "bowl": (("cuenco",), ("bol",)),
    "chess piece": (("pieza de ajedrez",), ("piece d'echecs",)), "trophy": (("trofeo",), ("trophee",)),
    "bell": (("campana",), ("cloche",)), "candle": (("vela",), ("bougie",)), "toy": (("juguete",), ("jouet",)),
    "egg": (("huevo",), ("oeuf",)), "fountain pen": (("pluma estilografica",), ("stylo plume",)),
    "headphones": (("auriculares",), ("casque audio",)), "coffee": (("cafe",), ("cafe",)),
    "phone": (("telefono", "movil"), ("telephone",)),
    # body parts and surface features
    "skin": (("piel",), ("peau",)), "fur": (("pelaje",), ("pelage", "fourrure")),
    "hair": (("pelo", "cabello"), ("cheveux", "poils")), "mane": (("melena", "crin"), ("criniere",)),
    "horns": (("cuernos",), ("cornes",)), "horn": (("cuerno",), ("corne",)), "tail": (("cola",), ("queue",)),
    "wings": (("alas",), ("ailes",)), "wing": (("ala",), ("aile",)), "eyes": (("ojos",), ("yeux",)),
    "eye": (("ojo",), ("oeil",)), "scales": (("escamas",), ("ecailles",)), "feathers": (("plumas",), ("plumes",)),
    "shell": (("caparazon", "concha"), ("carapace", "coquille")), "leaves": (("hojas",), ("feuilles",)),
    "petals": (("petalos",), ("petales",)), "body": (("cuerpo",), ("corps",)),
    "legs": (("patas", "piernas"), ("pattes", "jambes")), "hooves": (("pezunas",), ("sabots",)),
    "claws": (("garras",), ("griffes",)), "teeth": (("dientes",), ("dents",)), "spots": (("manchas",), ("taches",)),
    "stripes": (("rayas",), ("rayures",)), "handle": (("asa", "mango"), ("anse", "poignee")),
    "wheels": (("ruedas",), ("roues",)), "roof": (("techo",), ("toit",)), "coat": (("abrigo",), ("manteau",)),
    "hide": (("cuero crudo",), ("peau de bete",)), "surface": (("superficie",), ("surface",)),
    # materials
    "gold": (("oro",), ("or",)), "silver": (("plata",), ("argent",)), "copper": (("cobre",), ("cuivre",)),
    "bronze": (("bronce",), ("bronze",)), "brass": (("laton",), ("laiton",)), "iron": (("hierro",), ("fer",)),
    "steel": (("acero",), ("acier",)), "chrome": (("cromo",), ("chrome",)), "metal": (("metal",), ("metal",)),
    "wood": (("madera",), ("bois",)), "marble": (("marmol",), ("marbre",)), "stone": (("piedra",), ("pierre",)),
    "granite": (("granito",), ("granit",)), "glass": (("vidrio",), ("verre",)), "crystal": (("cristal",), ("cristal",)),
    "diamond": (("diamante",), ("diamant",)), "ice": (("hielo",), ("glace",)), "fire": (("fuego",), ("feu",)),
    "flames": (("flamas",), ("flammes",)), "flame": (("flama",), ("flamme",)), "lava": (("lava",), ("lave",)),
    "water": (("agua",), ("eau",)), "leather": (("cuero",), ("cuir",)), "velvet": (("terciopelo",), ("velours",)),
    "silk": (("seda",), ("soie",)), "wool": (("lana",), ("laine",)), "cotton": (("algodon",), ("coton",)),
    "denim": (("mezclilla",), ("jean",)), "fabric": (("tela",), ("tissu",)),
    "porcelain": (("porcelana",), ("porcelaine",)), "ceramic": (("ceramica",), ("ceramique",)),
    "clay": (("arcilla", "barro"), ("argile",)), "jade": (("jade",), ("jade",)),
    "obsidian": (("obsidiana",), ("obsidienne",)), "amber": (("ambar",), ("ambre",)), "pearl": (("perla",), ("perle",)),
    "moss": (("musgo",), ("mousse",)), "grass": (("hierba", "cesped"), ("herbe",)), "bark": (("corteza",), ("ecorce",)),
    "chocolate": (("chocolate",), ("chocolat",)), "candy": (("caramelo", "dulce"), ("bonbon",)),
    "honey": (("miel",), ("miel",)), "cheese": (("queso",), ("fromage",)), "paper": (("papel",), ("papier",)),
    "cardboard": (("carton",), ("carton",)), "plastic": (("plastico",), ("plastique",)),
    "rubber": (("goma", "caucho"), ("caoutchouc",)), "concrete": (("hormigon",), ("beton",)),
    "brick": (("ladrillo",), ("brique",)), "rust": (("oxido",), ("rouille",)), "neon": (("neon",), ("neon",)),
    "snow": (("nieve",), ("neige",)), "sand": (("arena",), ("sable",)), "cloud": (("nube",), ("nuage",)),
    "smoke": (("humo",), ("fumee",)), "lightning": (("rayo", "relampago"), ("foudre", "eclair")),
    "galaxy": (("galaxia",), ("galaxie",)), "stars": (("estrellas",), ("etoiles",)), "coral": (("coral",), ("corail",)),
    "mother-of-pearl": (("nacar",), ("nacre",)), "ivory": (("marfil",), ("ivoire",)),
    "emerald": (("esmeralda",), ("emeraude",)), "ruby": (("rubi",), ("rubis",)), "sapphire": (("zafiro",), ("saphir",)),
    "quartz": (("cuarzo",), ("quartz",)), "wicker": (("mimbre",), ("osier",)), "bamboo": (("bambu",), ("bambou",)),
    "cork": (("corcho",), ("liege",)), "mirror": (("espejo",), ("miroir",)), "slime": (("baba",), ("bave",)),
    "jelly": (("gelatina",), ("gelee",)), "lego": (("lego",), ("lego",)), "knitted wool": (("punto",), ("tricot",)),
}

# Adjectives: English word -> (Spanish forms, French forms). Placed after the noun in es/fr, before it in English.
_ADJECTIVES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "golden": (("dorado", "dorada", "dorados", "doradas"), ("dore", "doree", "dores", "dorees")),
    "silvery": (("plateado", "plateada", "plateados", "plateadas"), ("argente", "argentee", "argentes", "argentees")),
    "wooden": ((), ()),  # reached through the "de madera" / "en bois" phrases, see PHRASES_*
    "red": (("rojo", "roja", "rojos", "rojas"), ("rouge", "rouges")),
    "blue": (("azul", "azules"), ("bleu", "bleue", "bleus", "bleues")),
    "green": (("verde", "verdes"), ("vert", "verte", "verts", "vertes")),
    "yellow": (("amarillo", "amarilla", "amarillos", "amarillas"), ("jaune", "jaunes")),
    "black": (("negro", "negra", "negros", "negras"), ("noir", "noire", "noirs", "noires")),
    "white": (("blanco", "blanca", "blancos", "blancas"), ("blanc", "blanche", "blancs", "blanches")),
    "purple": (("morado", "morada", "violeta"), ("violet", "violette")),
    "pink": (("rosado", "rosada"), ("rosee",)),
    "orange": (("naranja", "anaranjado"), ("orange", "orangee")),
    "grey": (("gris", "grises"), ("gris", "grise")),
    "brown": (("marron",), ("marron", "brun", "brune")),
    "shiny": (("brillante", "brillantes", "reluciente"), ("brillant", "brillante", "luisant", "luisante")),
    "matte": (("mate",), ("mat", "mate")),
    "polished": (("pulido", "pulida"), ("poli", "polie")),
    "rusty": (("oxidado", "oxidada"), ("rouille", "rouillee")),
    "glowing": (("luminoso", "luminosa", "brillando"), ("lumineux", "lumineuse")),
    "transparent": (("transparente",), ("transparent", "transparente")),
    "metallic": (("metalico", "metalica"), ("metallique",)),
    "burning": (("ardiente", "ardiendo"), ("ardent", "ardente", "brulant", "brulante")),
    "frozen": (("congelado", "congelada", "helado", "helada"), ("gele", "gelee", "glace")),
    "iridescent": (("iridiscente", "tornasolado"), ("irise", "irisee")),
    "holographic": (("holografico", "holografica"), ("holographique",)),
    "crystalline": (("cristalino", "cristalina"), ("cristallin", "cristalline")),
    "fluffy": (("esponjoso", "esponjosa", "peludo", "peluda"), ("duveteux", "duveteuse", "poilu", "poilue")),
}

# Multi-word expressions translated as a whole (folded, space separated) — checked before single words.
PHRASES_ES: dict[str, str] = {
    "en llamas": "in flames", "en fuego": "on fire", "de fuego": "of fire", "de madera": "wooden",
    "por favor": "", "a rayas": "striped", "de oro": "of gold", "pavo real": "peacock",
    "osito de peluche": "teddy bear", "pieza de ajedrez": "chess piece", "reloj de pulsera": "watch",
    "pluma estilografica": "fountain pen", "cuero crudo": "hide",
}
PHRASES_FR: dict[str, str] = {
    "en feu": "on fire", "en flammes": "in flames", "de feu": "of fire", "en bois": "wooden", "de bois": "wooden",
    "s'il te plait": "", "s'il vous plait": "", "ours en peluche": "teddy bear", "piece d'echecs": "chess piece",
    "stylo plume": "fountain pen", "casque audio": "headphones", "peau de bete": "hide",
}

# fmt: on


def _table(index: int, common: dict[str, str]) -> dict[str, str]:
    table = dict(common)
    for english, forms in (*_NOUNS.items(), *_ADJECTIVES.items()):
        for word in forms[index]:
            if " " not in word:
                table.setdefault(word, english)
    return table


ES: dict[str, str] = _table(0, _COMMON_ES)
FR: dict[str, str] = _table(1, _COMMON_FR)
# fmt: off
ENGLISH_NOUNS: frozenset[str] = frozenset(_NOUNS)
ADJECTIVES: frozenset[str] = frozenset(_ADJECTIVES)
FUNCTION_WORDS: frozenset[str] = frozenset(
    {"a", "an", "the", "some", "with", "of", "of the", "and", "or", "in", "on", "its", "my", "very", "made", "covered",
     "that", "without", "one", "two", "three", "with the"}
)

# "X of Y" -> "Y X" when X is one of these ("skin of crocodile" -> "crocodile skin").
SURFACE_NOUNS: frozenset[str] = frozenset(
    {"skin", "scales", "fur", "leather", "hide", "feathers", "shell", "hair", "wool", "coat", "surface", "spots",
     "stripes"}
)

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
}

def _words(text: str) -> list[str]:
    return text.split()


# fmt: off
# --- language detection: frequent words (folded) ------------------------------------------------------------------
STOPWORDS: dict[str, frozenset[str]] = {  # (space-separated lists)
    "en": frozenset(_words("the a an with of and made in on make me generate create please my some out covered from "
                           "its is give want like draw render build")),
    "es": frozenset(_words("el la los las un una unos unas con y de del hecho hecha en por favor quiero su sus muy "
                           "que genera generame hazme crea creame dame dibuja piel")),
    "fr": frozenset(_words("le la les un une des avec et de du fait faite en je veux moi sa son ses tres qui au "
                           "aux genere cree fais dessine peau l' d' j'")),
    "de": frozenset(_words("der die das ein eine einen einem mit aus und von erzeuge mach mir bitte ich will")),
    "it": frozenset(_words("il lo gli un una uno con di e fatto fatta della dello creami generami per favore voglio")),
    "pt": frozenset(_words("o os um uma com de e feito feita em da do das dos gere crie faca quero")),
}
# fmt: on
