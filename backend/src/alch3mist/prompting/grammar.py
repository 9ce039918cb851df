"""Closed-class words of each language the offline rewriter translates (data only).

A bilingual dictionary translates content words; what it cannot do is tell how a request is built. These short
lists are the grammar the parser needs, per language: articles, the prepositions that introduce a material
("aus", "de", "di", "em", "van", "z", "av") or a feature ("with", "con", "mit"), conjunctions, intensifiers to
drop ("entirely", "komplett"), politeness, and the request verbs that open a request ("genérame", "fammi").
Everything is folded (lower case, no accents: see ``text.fold``); multi-word entries are space-separated tokens.

Content words (objects, materials, colours) are NOT here: they come from the dictionaries (:mod:`.lexicon`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GRAMMARS", "LANGUAGE_NAMES", "SUPPORTED", "Grammar"]


def _set(words: str) -> frozenset[str]:
    return frozenset(w.strip() for w in words.split("|") if w.strip())


@dataclass(frozen=True)
class Grammar:
    """The closed-class words of one language (folded)."""

    code: str  # ISO 639-1
    freedict: str  # ISO 639-3 as in FreeDict's package names (deu, fra …); "" for English
    articles: frozenset[str]
    made_of: frozenset[str]  # always introduce a material: "made of", "aus", "hecho de"
    weak_made_of: frozenset[str]  # introduce a material only when a material noun follows: "in", "de", "di", "van"
    with_: frozenset[str]  # introduce a feature: "with", "con", "mit"
    coated: frozenset[str]  # introduce what covers the surface, a material: "covered in", "cubierto de"
    of: frozenset[str]  # inside a noun phrase: "piel de cocodrilo", "statue of a horse"
    and_: frozenset[str]
    intensifiers: frozenset[str]  # dropped: "entirely", "completamente"
    fillers: frozenset[str]  # politeness, pronouns, request verbs and their enclitic forms
    adjectives_follow: bool = False  # Romance word order: the adjective after the noun


# fmt: off
GRAMMARS: dict[str, Grammar] = {
    "en": Grammar(
        "en", "",
        articles=_set("a|an|the|some|one|single"),
        made_of=_set("made of|made out of|made from|made in|out of|carved from|carved out of|carved in|cast in|"
                     "crafted from|crafted in|built from|sculpted from|sculpted in|formed from|formed of|"
                     "consisting of|entirely of|entirely from|fashioned from|forged from|forged in|woven from|"
                     "knitted from|knitted in|blown from|rendered in"),
        weak_made_of=_set("in|of|from|on"),
        with_=_set("with|wrapped in|dressed in|wearing|having|featuring|decorated with|inlaid with"),
        coated=_set("covered in|covered with|coated in|coated with"),
        of=_set("of"),
        and_=_set("and|&|plus|,"),
        intensifiers=_set("entirely|completely|fully|totally|all|wholly|pure|solid|really|very"),
        fillers=_set("please|pls|can you|could you|would you|will you|i want|i would like|i'd like|i need|i wish|"
                     "generate|create|make|draw|render|build|design|give|show|produce|sculpt|model|imagine|paint|"
                     "me|us|for me|for us|a 3d model of|a 3d render of|a 3d asset of|an image of|a picture of|"
                     "a photo of|a render of|a model of|3d model of|3d|thanks|thank you|now|just|hey|hi|hello|it"),
    ),
    "es": Grammar(
        "es", "spa",
        articles=_set("un|una|unos|unas|el|la|los|las|lo"),
        made_of=_set("hecho de|hecha de|hechos de|hechas de|hecho en|hecha en|hecho con|hecha con|tallado en|"
                     "tallada en|tallado de|tallada de|fabricado en|fabricada en|fabricado de|fabricada de|"
                     "esculpido en|esculpida en|forjado en|forjada en|de puro|de pura|todo de|toda de"),
        weak_made_of=_set("de|en|del"),
        with_=_set("con|lleno de|llena de"),
        coated=_set("cubierto de|cubierta de|cubierto con|cubierta con|recubierto de|recubierta de|forrado de|"
                    "forrada de"),
        of=_set("de|del"),
        and_=_set("y|e|,|mas"),
        intensifiers=_set("completamente|totalmente|enteramente|entero|entera|todo|toda|puro|pura|macizo|maciza|"
                          "muy"),
        fillers=_set("por favor|porfa|puedes|podrias|quiero|quisiera|necesito|me gustaria|generame|genera|generar|"
                     "crea|creame|crear|hazme|haz|hacer|dibujame|dibuja|renderiza|renderizame|dame|muestrame|"
                     "disena|disename|modela|modelame|esculpeme|imagina|me|nos|un modelo 3d de|una imagen de|"
                     "una foto de|un render de|modelo 3d de|3d|gracias|hola"),
        adjectives_follow=True,
    ),
    "fr": Grammar(
        "fr", "fra",
        articles=_set("un|une|des|le|la|les|l'"),
        made_of=_set("fait de|faite de|faits de|faites de|fait en|faite en|faits en|faites en|sculpte dans|"
                     "sculptee dans|taille dans|taillee dans|fabrique en|fabriquee en|forge en|tout en|toute en"),
        weak_made_of=_set("en|de|d'|du"),
        with_=_set("avec|orne de|ornee de|aux|au"),
        coated=_set("recouvert de|recouverte de|couvert de|couverte de|recouvert d'|recouverte d'|couvert d'|"
                    "couverte d'"),
        of=_set("de|d'|du|des"),
        and_=_set("et|,|plus"),
        intensifiers=_set("entierement|completement|totalement|tout|toute|pur|pure|massif|massive|tres"),
        fillers=_set("s'il te plait|s'il vous plait|stp|svp|peux-tu|pourrais-tu|pouvez-vous|pourriez-vous|je veux|"
                     "je voudrais|j'aimerais|genere-moi|genere|generer|cree-moi|cree|creer|fais-moi|fais|faire|"
                     "dessine-moi|dessine|donne-moi|montre-moi|modelise|modelise-moi|imagine|moi|nous|"
                     "un modele 3d de|une image de|une photo de|un rendu de|3d|merci|bonjour"),
        adjectives_follow=True,
    ),
    "de": Grammar(
        "de", "deu",
        articles=_set("ein|eine|einen|einem|einer|eines|der|die|das|den|dem|des"),
        made_of=_set("aus|gemacht aus|hergestellt aus|gefertigt aus|geschnitzt aus|gegossen aus|gestrickt aus|"
                     "geformt aus|ganz aus|komplett aus|vollstandig aus"),
        weak_made_of=_set("in"),
        with_=_set("mit|verziert mit"),
        coated=_set("bedeckt mit|uberzogen mit|uberzogen von|uberzogen aus"),
        of=_set("von|vom"),
        and_=_set("und|,|sowie"),
        intensifiers=_set("ganz|ganzlich|komplett|vollstandig|vollig|rein|reinem|reinen|reiner|purem|puren|purer|"
                          "massiv|massivem|massiven|sehr"),
        fillers=_set("bitte|kannst du|konntest du|konnten sie|ich mochte|ich will|ich hatte gern|ich hatte gerne|"
                     "ich brauche|erzeuge|erzeug|erstelle|erstell|generiere|generier|mach|mache|zeichne|zeige|zeig|"
                     "gib|baue|bau|modelliere|render|rendere|mir|uns|ein 3d-modell|ein 3d modell|3d|danke|hallo|"
                     "mal"),
    ),
    "it": Grammar(
        "it", "ita",
        articles=_set("un|uno|una|un'|il|lo|la|l'|i|gli|le"),
        made_of=_set("fatto di|fatta di|fatti di|fatte di|fatto in|fatta in|realizzato in|realizzata in|"
                     "realizzato con|realizzata con|scolpito nel|scolpita nel|scolpito in|scolpita in|"
                     "intagliato nel|intagliata nel|tutto d'|tutta d'|tutto di|tutta di"),
        weak_made_of=_set("di|d'|in"),
        with_=_set("con"),
        coated=_set("coperto di|coperta di|ricoperto di|ricoperta di|rivestito di|rivestita di"),
        of=_set("di|d'|del|della|dello|dei|degli|delle"),
        and_=_set("e|ed|,"),
        intensifiers=_set("completamente|interamente|tutto|tutta|puro|pura|massiccio|massiccia|molto"),
        fillers=_set("per favore|per piacere|puoi|potresti|voglio|vorrei|mi serve|generami|genera|generare|creami|"
                     "crea|creare|fammi|fai|fare|disegnami|disegna|mostrami|dammi|modellami|modella|immagina|mi|ci|"
                     "un modello 3d di|un'immagine di|una foto di|un render di|3d|grazie|ciao"),
        adjectives_follow=True,
    ),
    "pt": Grammar(
        "pt", "por",
        articles=_set("um|uma|uns|umas|o|a|os|as"),
        made_of=_set("feito de|feita de|feitos de|feitas de|feito em|feita em|esculpido em|esculpida em|"
                     "talhado em|talhada em|fabricado em|fabricada em|forjado em|forjada em|todo de|toda de"),
        weak_made_of=_set("de|em|do|da"),
        with_=_set("com"),
        coated=_set("coberto de|coberta de|coberto com|coberta com|revestido de|revestida de"),
        of=_set("de|do|da|dos|das"),
        and_=_set("e|,"),
        intensifiers=_set("completamente|totalmente|inteiramente|todo|toda|puro|pura|macico|macica|muito"),
        fillers=_set("por favor|pode|podes|poderia|quero|queria|gostaria de|preciso de|gere|gera|gerar|gere-me|"
                     "crie|cria|criar|crie-me|faca|faz|fazer|faca-me|faz-me|desenhe|desenha|mostre|mostra|"
                     "modele|modela|imagine|me|nos|um modelo 3d de|uma imagem de|uma foto de|3d|obrigado|"
                     "obrigada|ola"),
        adjectives_follow=True,
    ),
    "nl": Grammar(
        "nl", "nld",
        articles=_set("een|de|het|'n"),
        made_of=_set("gemaakt van|gemaakt uit|vervaardigd uit|vervaardigd van|gesneden uit|gegoten in|"
                     "gebreid van|helemaal van|helemaal uit|uit"),
        weak_made_of=_set("van|in"),
        with_=_set("met|versierd met"),
        coated=_set("bedekt met|overdekt met"),
        of=_set("van"),
        and_=_set("en|,"),
        intensifiers=_set("helemaal|volledig|geheel|compleet|puur|pure|massief|massieve|zeer|heel"),
        fillers=_set("alsjeblieft|alstublieft|aub|graag|kun je|kan je|kunt u|ik wil|ik zou graag|ik wil graag|"
                     "genereer|maak|maken|creeer|teken|toon|geef|bouw|modelleer|render|mij|me|ons|"
                     "een 3d-model van|een 3d model van|3d|bedankt|dank je|hallo"),
    ),
    "pl": Grammar(
        "pl", "pol",
        articles=_set(""),
        made_of=_set("z|ze|wykonany z|wykonana z|wykonane z|wykonany ze|wykonana ze|wykonane ze|zrobiony z|"
                     "zrobiona z|zrobione z|zrobiony ze|zrobiona ze|zrobione ze|wyrzezbiony z|wyrzezbiona z|"
                     "odlany z|odlana z|cały z|cała z|całe z|cały ze|cała ze|całe ze|cala z|cale z|caly z"),
        weak_made_of=_set("w"),
        with_=_set(""),
        coated=_set("pokryty|pokryta|pokryte|oblozony|obłozona"),
        of=_set(""),
        and_=_set("i|oraz|a|,"),
        intensifiers=_set("całkowicie|calkowicie|w całosci|w calosci|czysty|czystego|czystej|litego|litej|bardzo"),
        fillers=_set("prosze|poprosze|czy mozesz|mozesz|chce|chcialbym|chcialabym|potrzebuje|wygeneruj|generuj|"
                     "stworz|utworz|zrob|narysuj|pokaz|daj|zaprojektuj|wymodeluj|wyrenderuj|mi|nam|"
                     "model 3d|3d|dzieki|dziekuje|czesc"),
    ),
    "sv": Grammar(
        "sv", "swe",
        articles=_set("en|ett|den|det|de"),
        made_of=_set("gjord av|gjort av|gjorda av|tillverkad av|tillverkat av|snidad av|snidad i|gjuten i|"
                     "stickad av|helt av|helt i"),
        weak_made_of=_set("av|i"),
        with_=_set("med"),
        coated=_set("tackt av|tackt med|tackta med|belagd med"),
        of=_set("av"),
        and_=_set("och|,"),
        intensifiers=_set("helt|fullstandigt|ren|rent|massiv|massivt|mycket"),
        fillers=_set("snalla|tack|kan du|jag vill|jag vill ha|jag skulle vilja ha|generera|skapa|gor|gora|rita|"
                     "visa|ge|bygg|modellera|rendera|mig|oss|en 3d-modell av|3d|hej"),
    ),
}
# fmt: on

SUPPORTED: tuple[str, ...] = tuple(GRAMMARS)
LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese",
    "nl": "Dutch", "pl": "Polish", "sv": "Swedish", "da": "Danish", "fi": "Finnish", "ja": "Japanese",
    "zh": "Chinese", "ko": "Korean", "ru": "Russian", "el": "Greek", "he": "Hebrew", "ar": "Arabic",
}  # fmt: skip
