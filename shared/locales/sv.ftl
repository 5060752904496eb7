# SMS: the code early, then who it is for and how long it lives.
sms = { $code } är din verifieringskod för { $app }. Den går ut om { $minutes ->
        [one] { $minutes } minut
       *[other] { $minutes } minuter
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Din verifieringskod för { $app } är { $code }.
