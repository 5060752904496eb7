# SMS: the code early, then who it is for and how long it lives.
sms = { $code } to Twój kod { $app }. Ważny przez { $minutes ->
        [one] { $minutes } minutę
        [few] { $minutes } minuty
        [many] { $minutes } minut
       *[other] { $minutes } minuty
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Twój kod weryfikacyjny { $app } to { $code }.
