# SMS: the code early, then who it is for and how long it lives.
sms = { $code } er din bekreftelseskode for { $app }. Den utløper om { $minutes ->
        [one] { $minutes } minutt
       *[other] { $minutes } minutter
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Din bekreftelseskode for { $app } er { $code }.
