# SMS: word for word what the service has always sent (clients' tests compare it).
sms = Tu código de verificación de { $app } es { $code }. Vence en { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }.
# Voice: said twice; $code is the digits with commas between.
voice = Tu código de verificación de { $app } es { $code }.
