# SMS: the code early, then who it is for and how long it lives.
sms = { $code } ist Ihr Bestätigungscode für { $app }. Gültig für { $minutes ->
        [one] { $minutes } Minute
       *[other] { $minutes } Minuten
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Ihr Bestätigungscode für { $app } lautet { $code }.
