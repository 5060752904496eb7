# SMS: the code early, then who it is for and how long it lives.
# intl_pluralrules 7.0.2 tests `i = 2..19` where CLDR says `n % 100 = 2..19`, so
# 101-119, 201-219, ... minutes read "de minute" (CLDR: plain "minute"); such
# lifetimes (over 100 minutes) are rare and the text stays understandable.
sms = { $code } este codul tău { $app }. Expiră în { $minutes ->
        [one] { $minutes } minut
        [few] { $minutes } minute
       *[other] { $minutes } de minute
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Codul tău de verificare { $app } este { $code }.
