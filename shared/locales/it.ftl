# SMS: the code early, then who it is for and how long it lives.
sms = { $code } è il tuo codice di verifica per { $app }. Scade tra { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minuti
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Il tuo codice di verifica per { $app } è { $code }.
