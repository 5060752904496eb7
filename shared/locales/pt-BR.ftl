# SMS: the code early, then who it is for and how long it lives.
sms = { $code } é seu código { $app }. Expira em { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Seu código de verificação { $app } é { $code }.
