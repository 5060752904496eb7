# SMS: the code early, then who it is for and how long it lives.
sms = { $code } je váš ověřovací kód { $app }. Platí { $minutes ->
        [one] { $minutes } minutu
        [few] { $minutes } minuty
        [many] { $minutes } minuty
       *[other] { $minutes } minut
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Váš ověřovací kód pro { $app } je { $code }.
