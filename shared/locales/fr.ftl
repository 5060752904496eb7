# SMS: the code early, then who it is for and how long it lives.
sms = { $code } est votre code { $app }. Il expire dans { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Votre code de vérification { $app } est { $code }.
